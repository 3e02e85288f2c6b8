;;; geex.el --- Geex in Emacs: completion from geex serve, and tasks on the region  -*- lexical-binding: t -*-

;; Completion: eglot (built into Emacs 29; the elpa-eglot package or M-x package-install on 28)
;; runs tabby-agent (`npm install -g tabby-agent@1.5.0`) as the language server of the modes in
;; `geex-modes'. `geex serve' speaks Tabby's API; the agent reads the server and its key from
;; ~/.tabby-client/agent/config.toml. Complete at point with C-M-i (completion-at-point): eglot
;; inserts the whole completion the agent offers.
;;
;; Tasks: M-x geex-translate, geex-explain and geex-comment run `geex task VERB -' on the region
;; and show the answer in a buffer beside (the key comes from $GEEX_API_KEY).
;;
;; Install: copy this file to ~/.emacs.d/lisp/geex.el, then in your init file
;;   (add-to-list 'load-path "~/.emacs.d/lisp")
;;   (setq geex-url "http://127.0.0.1:8000")  ; these settings go before the require
;;   (require 'geex)
;;   (add-hook 'python-mode-hook #'eglot-ensure)

(require 'eglot)
(require 'subr-x)

(defvar geex-agent-command '("tabby-agent" "--lsp" "--stdio")
  "The language server's command line (read when geex.el loads).")

(defvar geex-modes '(python-mode python-ts-mode js-mode typescript-mode go-mode rust-mode
                     c-mode c++-mode java-mode sh-mode)
  "The major modes whose language server is tabby-agent (eglot runs one server per mode).")

(defvar geex-command "geex"
  "The geex command that runs the tasks.")

(defvar geex-url "http://127.0.0.1:8000"
  "The server the tasks ask (the agent's own is in its config.toml).")

(add-to-list 'eglot-server-programs (cons geex-modes geex-agent-command))

(defun geex--language ()
  "The code's language for `geex task': the major mode's name, as python-mode gives python."
  (replace-regexp-in-string "\\(-ts\\)?-mode\\'" "" (symbol-name major-mode)))

(defun geex--task (start end verb &rest flags)
  "Run `geex task VERB -' on the text from START to END and show its answer beside.
Only the answer reaches the buffer; an error is signalled with geex's message."
  (let ((answer (get-buffer-create (format "*geex %s*" verb)))
        (errors (make-temp-file "geex-task")))
    (with-current-buffer answer
      (erase-buffer))
    (unwind-protect
        (let ((status (apply #'call-process-region start end geex-command nil
                             (list answer errors) nil "task" verb "-"
                             "--language" (geex--language) "--url" geex-url flags)))
          (unless (eql status 0)
            (error "%s" (string-trim (with-temp-buffer
                                       (insert-file-contents errors)
                                       (buffer-string))))))
      (delete-file errors))
    (display-buffer answer)
    answer))

(defun geex-translate (start end target)
  "Translate the region from START to END into the language TARGET."
  (interactive "r\nsTranslate to (go, cpp, java, ...): ")
  (geex--task start end "translate" "--to" target))

(defun geex-explain (start end)
  "Explain the code in the region from START to END."
  (interactive "r")
  (geex--task start end "explain"))

(defun geex-comment (start end)
  "Add a comment to each line of the code in the region from START to END."
  (interactive "r")
  (geex--task start end "comment"))

(provide 'geex)
;;; geex.el ends here

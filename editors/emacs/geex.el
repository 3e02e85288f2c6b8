;;; geex.el --- Geex in Emacs: completion from geex serve, and tasks on the region  -*- lexical-binding: t -*-

;; Completion: eglot (built into Emacs 29; the elpa-eglot package or M-x package-install on 28)
;; runs tabby-agent (`npm install -g tabby-agent@1.5.0`) as the language server of the modes in
;; `geex-modes'. `geex serve' speaks Tabby's API; the agent reads the server and its key from
;; ~/.tabby-client/agent/config.toml. Complete at point with C-M-i (completion-at-point): eglot
;; inserts the whole completion the agent offers.
;;
;; Tasks: M-x geex-translate, geex-explain and geex-comment run `geex task VERB -' on the region;
;; the answer streams into a buffer beside while you go on editing (the key comes from
;; $GEEX_API_KEY). Killing that buffer stops the task.
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

;; Emacs 29's tree-sitter modes are listed beside the classic ones: eglot picks a server by the
;; exact major mode.
(defvar geex-modes '(python-mode python-ts-mode js-mode js-ts-mode js2-mode rjsx-mode
                     typescript-mode typescript-ts-mode tsx-ts-mode go-mode go-ts-mode
                     rust-mode rust-ts-mode rustic-mode c-mode c-ts-mode c++-mode c++-ts-mode
                     java-mode java-ts-mode csharp-mode csharp-ts-mode sh-mode bash-ts-mode
                     ruby-mode ruby-ts-mode php-mode kotlin-mode scala-mode lua-mode swift-mode)
  "The major modes whose language server is tabby-agent (eglot runs one server per mode).")

(defvar geex-command "geex"
  "The geex command that runs the tasks.")

(defvar geex-url "http://127.0.0.1:8000"
  "The server the tasks ask (the agent's own is in its config.toml).")

(defvar geex-languages
  '((js2-mode . "javascript") (js3-mode . "javascript") (rjsx-mode . "javascript")
    (tsx-ts-mode . "typescript") (rustic-mode . "rust") (bash-ts-mode . "shell")
    (cperl-mode . "perl") (tuareg-mode . "ocaml") (f90-mode . "fortran")
    (ess-r-mode . "r") (latex-mode . "tex") (LaTeX-mode . "tex") (mhtml-mode . "html")
    (lisp-mode . "common-lisp") (lisp-interaction-mode . "emacs-lisp")
    (makefile-gmake-mode . "makefile") (makefile-bsdmake-mode . "makefile")
    (js-jsx-mode . "javascript") (objc-mode . "objective-c") (octave-mode . "matlab"))
  "Major modes whose name, less -mode or -ts-mode, is not a language `geex serve' knows,
and the server's name for their language.")

(add-to-list 'eglot-server-programs (cons geex-modes geex-agent-command))

(defun geex-language-of (mode)
  "The server's name for the language of major MODE: `geex-languages', else the mode's name
without -ts-mode or -mode (python-ts-mode gives python)."
  (or (alist-get mode geex-languages)
      (replace-regexp-in-string "\\(-ts\\)?-mode\\'" "" (symbol-name mode))))

(defun geex--task (start end verb &rest flags)
  "Run `geex task VERB -' on the text from START to END; its answer streams into a buffer
shown beside, which the function returns while the task runs. Killing the buffer stops the
task. When the task fails, the buffer goes unless it holds some answer, and geex's one-line
error is the message."
  (let* ((answer (get-buffer-create (format "*geex %s*" verb)))
         (errors (generate-new-buffer (format " *geex %s errors*" verb)))
         ;; A pipe of our own for stderr: the default one writes its own end into the buffer.
         (stderr (make-pipe-process :name (format "geex %s stderr" verb) :buffer errors
                                    :noquery t :sentinel #'ignore))
         (running (get-buffer-process answer)))
    (when running ; the same task asked again: the old one stops, and keeps out of the buffer
      (set-process-buffer running nil)
      (delete-process running))
    (with-current-buffer answer
      (erase-buffer))
    (let ((process
           (make-process
            :name (format "geex %s" verb) :buffer answer :stderr stderr :noquery t
            :connection-type 'pipe
            :command (append (list geex-command "task" verb "-" "--language"
                                   (geex-language-of major-mode) "--url" geex-url)
                             flags)
            :filter #'geex--insert
            :sentinel (lambda (process _event)
                        (unless (process-live-p process)
                          (geex--finish process errors))))))
      (process-send-region process start end)
      (process-send-eof process))
    (display-buffer answer)
    answer))

(defun geex--insert (process text)
  "Append TEXT, as it arrives, to the end of PROCESS's buffer, if it is still there."
  (let ((buffer (process-buffer process)))
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (save-excursion
          (goto-char (point-max))
          (insert text))))))

(defun geex--finish (process errors)
  "After PROCESS ended: report its failure with geex's error line from ERRORS, then drop it."
  (let ((answer (process-buffer process))
        (status (process-exit-status process)))
    (unless (or (eql status 0) (not (buffer-live-p answer)))
      ;; geex's stderr reaches ERRORS through its own pipe: wait (bounded) until it closes.
      (let ((pipe (get-buffer-process errors)) (tries 40))
        (while (and pipe (process-live-p pipe) (> tries 0))
          (accept-process-output pipe 0.05)
          (setq tries (1- tries))))
      (let ((reason (string-trim (with-current-buffer errors (buffer-string)))))
        (when (zerop (buffer-size answer))
          (kill-buffer answer)) ; no answer: no empty buffer left behind
        (message "%s" (if (string-empty-p reason) (format "geex task: exit code %d" status)
                        reason))))
    (kill-buffer errors)))

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

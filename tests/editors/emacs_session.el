;;; emacs_session.el --- one user's session in batch Emacs, driven by tests/editors/test_emacs.py  -*- lexical-binding: t -*-

;; Load the Geex config users copy (editors/emacs/geex.el), open a Python file, M-x eglot,
;; complete at point after "return ", save, translate the function with M-x geex-translate, and
;; record what happened as JSON. Every wait is bounded; a step that fails is recorded as an error
;; and the session still ends.
;; Run as: GEEX_EMACS_SESSION=settings.json emacs --batch -Q -l THIS

(require 'json)

(defvar session-settings
  (let ((json-object-type 'alist) (json-array-type 'list) (json-key-type 'symbol))
    (json-read-file (getenv "GEEX_EMACS_SESSION"))))

(defun session-setting (key) (alist-get key session-settings))

(defvar session-report nil)
(defun session-record (key value) (push (cons key value) session-report))

(defun session-wait-for (predicate)
  "Process events until PREDICATE holds or the settings' wait is over; whether it held."
  (let ((deadline (+ (float-time) (/ (session-setting 'wait_ms) 1000.0))))
    (while (and (not (funcall predicate)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (funcall predicate)))

(defun session-buffer-lines () (split-string (buffer-substring-no-properties (point-min) (point-max)) "\n"))

(defun session ()
  (setq geex-agent-command (session-setting 'agent)
        geex-url (session-setting 'url))
  (unless (locate-library "eglot") ; Emacs 28: eglot is a package
    (package-activate-all))
  (load (session-setting 'plugin) nil t)
  (find-file (session-setting 'file))
  (session-record 'mode (symbol-name major-mode))
  (call-interactively #'eglot)
  (unless (session-wait-for (lambda () (and (eglot-current-server) eglot--managed-mode)))
    (error "eglot did not start tabby-agent"))
  (session-record 'server_info (plist-get (eglot--server-info (eglot-current-server)) :name))
  (session-record 'completion_provider (and (eglot--server-capable :completionProvider) t))

  ;; The cursor after "return ", as a user places it, then completion-at-point (C-M-i).
  (goto-char (point-min))
  (forward-line (1- (car (session-setting 'cursor))))
  (move-to-column (cadr (session-setting 'cursor)))
  (session-record 'before (session-buffer-lines))
  (completion-at-point)
  (session-record 'after (session-buffer-lines))
  (save-buffer)

  ;; M-x geex-translate on the function's lines: the answer in a buffer beside.
  (let* ((lines (session-setting 'translate))
         (start (progn (goto-char (point-min)) (forward-line (1- (car lines))) (point)))
         (end (progn (forward-line (1+ (- (cadr lines) (car lines)))) (point)))
         (answer (geex-translate start end (session-setting 'target))))
    (session-record 'translation (with-current-buffer answer (session-buffer-lines)))
    (session-record 'translation_shown (and (get-buffer-window answer) t)))

  ;; A target the server does not know: geex's one-line error, signalled.
  (session-record 'refusal (condition-case err
                       (progn (geex-translate (point-min) (point-max) "klingon") nil)
                     (error (error-message-string err)))))

(condition-case err
    (session)
  (error (session-record 'error (error-message-string err))))
(with-temp-file (session-setting 'out)
  (insert (json-encode session-report)))
(kill-emacs 0)

;;; emacs_session.el --- one user's session in batch Emacs, driven by tests/editors/test_emacs.py  -*- lexical-binding: t -*-

;; Load the Geex config users copy (editors/emacs/geex.el), open a Python file, M-x eglot,
;; complete at point after "return ", save, translate the function with M-x geex-translate, and
;; record what happened as JSON. Every wait is bounded; a step that fails is recorded as an error
;; and the session still ends.
;; Run as: GEEX_EMACS_SESSION=settings.json emacs --batch -l THIS
;; (--batch skips the user's init file; not -Q, which would skip the site start files through
;; which Debian's elpa-eglot reaches Emacs 28.)

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

(defvar session-messages nil "What was said with `message', newest first.")
(advice-add 'message :before
            (lambda (format &rest args)
              (when format (push (apply #'format-message format args) session-messages))))

(defun session-task-done (buffer)
  "Wait, bounded, until BUFFER's `geex task' process has ended; whether it did."
  (let ((process (get-buffer-process buffer)))
    (session-wait-for (lambda () (not (and process (process-live-p process)))))))

(defconst session-capture-lines 12)
(defun session-capture (title)
  "The current buffer as Emacs shows it (control characters as ^X), point's line marked, at
most `session-capture-lines' lines: a terminal capture for the docs."
  (let* ((row (line-number-at-pos))
         (lines (session-buffer-lines))
         (shown (list (format ";; %s (%s, cursor at line %d, column %d)" title (buffer-name)
                              row (1+ (current-column))))))
    (seq-do-indexed
     (lambda (line index)
       (when (< index session-capture-lines)
         (push (concat (if (= (1+ index) row) "> " "  ")
                       (replace-regexp-in-string "[\0-\37]"
                                                 (lambda (c) (format "^%c" (+ (aref c 0) 64)))
                                                 line t t))
               shown)))
     lines)
    (when (> (length lines) session-capture-lines)
      (push (format "  ... %d more lines" (- (length lines) session-capture-lines)) shown))
    (string-join (nreverse shown) "\n")))

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
  (session-record 'capture_before (session-capture "before"))
  (completion-at-point)
  (session-record 'after (session-buffer-lines))
  (session-record 'capture_after (session-capture "after C-M-i"))
  (save-buffer)

  ;; M-x geex-translate on the function's lines: the answer in a buffer beside.
  (let* ((lines (session-setting 'translate))
         (start (progn (goto-char (point-min)) (forward-line (1- (car lines))) (point)))
         (end (progn (forward-line (1+ (- (cadr lines) (car lines)))) (point)))
         (answer (geex-translate start end (session-setting 'target))))
    ;; The task runs on while the editor goes on: the call returned with the process live.
    (session-record 'returned_while_running (and (get-buffer-process answer) t))
    (unless (session-task-done answer)
      (error "geex-translate did not finish"))
    (session-record 'translation (with-current-buffer answer (session-buffer-lines)))
    (session-record 'translation_shown (and (get-buffer-window answer) t))
    (session-record 'capture_translation
                    (with-current-buffer answer
                      (goto-char (point-min))
                      (session-capture (format "M-x geex-translate RET %s" (session-setting 'target))))))

  ;; Killing the answer buffer while the task runs stops the task, quietly.
  (let* ((messages (length session-messages))
         (answer (geex-translate (point-min) (point-max) (session-setting 'target)))
         (process (get-buffer-process answer)))
    (kill-buffer answer)
    (session-wait-for (lambda () (not (process-live-p process))))
    (session-record 'killed_task
                    (list (cons 'status (symbol-name (process-status process)))
                          (cons 'messages (- (length session-messages) messages)))))

  ;; A target the server does not know: geex's one-line error as the message, no buffer left.
  (let ((answer (geex-translate (point-min) (point-max) "klingon")))
    (unless (session-task-done answer)
      (error "geex-translate klingon did not finish"))
    (session-wait-for (lambda () (not (buffer-live-p answer))))
    (session-record 'refusal (car session-messages))
    (session-record 'refusal_buffer_left (if (buffer-live-p answer) t :json-false))))

(condition-case err
    (session)
  (error (session-record 'error (error-message-string err))))
(with-temp-file (session-setting 'out)
  (insert (json-encode session-report)))
(kill-emacs 0)

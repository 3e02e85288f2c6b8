/**
 * Waiting out a burst of keystrokes: VS Code asks for an inline completion on every edit, and
 * only the request after the last one of a burst is worth sending to the server.
 */
import type * as vscode from "vscode";

export class Debouncer {
  private supersede: (() => void) | undefined;

  /**
   * Whether `ms` passed with no newer `wait` and no cancellation of `token`. A newer call ends
   * the older wait at once (false), so at most one request of a burst reaches the server.
   */
  wait(ms: number, token: vscode.CancellationToken): Promise<boolean> {
    this.supersede?.();
    return new Promise<boolean>((resolve) => {
      const finish = (waited: boolean): void => {
        clearTimeout(timer);
        cancelled.dispose();
        if (this.supersede === stop) this.supersede = undefined;
        resolve(waited);
      };
      const stop = (): void => {
        finish(false);
      };
      const timer = setTimeout(() => {
        finish(true);
      }, ms);
      const cancelled = token.onCancellationRequested(stop);
      this.supersede = stop;
      if (token.isCancellationRequested) stop();
    });
  }

  /** Ends the pending wait (false), for a request that goes ahead without one. */
  cancel(): void {
    this.supersede?.();
  }
}

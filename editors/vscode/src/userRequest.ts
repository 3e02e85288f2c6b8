/**
 * How a command the user ran asks the server: counted in the activity (the status bar shows
 * it), under a notification whose Cancel button closes the connection (which cancels the
 * generation on the server), and with its failure shown as an error message that names the
 * problem. A cancelled request is not a failure: it ends quietly.
 */
import * as vscode from "vscode";
import type { Services } from "./services";

export interface UserRequest {
  /** What the status bar says is running, e.g. "translating". */
  activity: string;
  /** The notification's text, e.g. "Geex: translating to Go". */
  title: string;
  /** Cancels the request as the Cancel button does (a newer request replacing it). */
  signal?: AbortSignal;
}

/** The work's result, or undefined when it was cancelled or failed (the failure shown). */
export async function runUserRequest<T>(
  services: Services,
  request: UserRequest,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T | undefined> {
  const controller = new AbortController();
  request.signal?.addEventListener("abort", () => {
    controller.abort();
  });
  try {
    return await services.activity.track(request.activity, async () =>
      vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: request.title, cancellable: true },
        (_progress, token) => {
          const cancelled = token.onCancellationRequested(() => {
            controller.abort();
          });
          return work(controller.signal).finally(() => {
            cancelled.dispose();
          });
        },
      ),
    );
  } catch (error) {
    if (!controller.signal.aborted) reportFailure(error);
    return undefined;
  }
}

/** An error message for a failure: the server's own words where it sent some. */
export function reportFailure(error: unknown): void {
  if (isAbort(error)) return;
  const message = error instanceof Error ? error.message : String(error);
  void vscode.window.showErrorMessage(`Geex: ${message}`);
}

/** Whether an error is a request's own cancellation (fetch's AbortError). */
export function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/**
 * Feeds each piece of a streamed answer to `use`, which returns false to read no further; the
 * answer's finish reason ("length": cut at max_tokens), or undefined when `use` stopped it.
 */
export async function readPieces(
  stream: AsyncGenerator<string, string, undefined>,
  use: (piece: string) => Promise<boolean> | boolean,
): Promise<string | undefined> {
  for (;;) {
    const step = await stream.next();
    if (step.done) return step.value;
    if (!(await use(step.value))) {
      await stream.return("");
      return undefined;
    }
  }
}

/** What to tell the user of an answer that reached the token limit. */
export function cutAtMaxTokens(maxTokens: number): string {
  return (
    `reached geex.tasks.maxTokens (${maxTokens} tokens), so it may be incomplete: ` +
    "raise the setting for longer answers"
  );
}

/**
 * The "Geex" output channel and the last failure. Completion as you type fails quietly (a
 * message on every keystroke would be unusable): the failure is logged once and the status bar
 * shows it, until a request succeeds again.
 */
import * as vscode from "vscode";
import { GeexError } from "./client";

export interface Failure {
  /** What was being done ("completing"). */
  what: string;
  message: string;
  /** The server's HTTP status, where it answered. */
  httpStatus: number | undefined;
  at: Date;
}

export class GeexLog implements vscode.Disposable {
  private readonly channel = vscode.window.createOutputChannel("Geex");
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private failure: Failure | undefined;

  get lastFailure(): Failure | undefined {
    return this.failure;
  }

  info(message: string): void {
    this.channel.appendLine(`${new Date().toISOString()} ${message}`);
  }

  /** Records a failure; the same failure again (the next keystroke's) is not logged twice. */
  failed(what: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const repeated = this.failure?.what === what && this.failure.message === message;
    const httpStatus = error instanceof GeexError ? error.status : undefined;
    this.failure = { what, message, httpStatus, at: new Date() };
    if (!repeated) this.info(`${what} failed: ${message}`);
    this.changed.fire();
  }

  /** A request succeeded: the last failure is over. */
  succeeded(what: string): void {
    if (this.failure?.what !== what) return;
    this.failure = undefined;
    this.info(`${what} works again`);
    this.changed.fire();
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.changed.dispose();
    this.channel.dispose();
  }
}

/**
 * What the extension is asking the server right now ("completing", "translating"), for the
 * status bar: each request runs inside `track`, which counts it in and out even when it fails
 * or is cancelled.
 */
import * as vscode from "vscode";

export class Activity implements vscode.Disposable {
  private readonly running = new Map<string, number>();
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;

  async track<T>(label: string, work: () => Promise<T>): Promise<T> {
    this.running.set(label, (this.running.get(label) ?? 0) + 1);
    this.changed.fire();
    try {
      return await work();
    } finally {
      const left = (this.running.get(label) ?? 1) - 1;
      if (left > 0) this.running.set(label, left);
      else this.running.delete(label);
      this.changed.fire();
    }
  }

  /** The labels of what is running, in the order they started. */
  get labels(): string[] {
    return [...this.running.keys()];
  }

  dispose(): void {
    this.changed.dispose();
  }
}

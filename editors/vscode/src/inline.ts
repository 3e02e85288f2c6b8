/**
 * Completion as you type: VS Code's inline suggestions (ghost text), filled in the middle from
 * the text before and after the cursor. A burst of keystrokes sends one request (debounce), a
 * request VS Code no longer wants is aborted so the server stops generating it, and contexts
 * already answered are served from a cache.
 */
import * as vscode from "vscode";
import { MAX_PREFIX_CHARS, MAX_SUFFIX_CHARS } from "./client";
import { CompletionCache } from "./completionCache";
import { completionEnabledFor, type GeexSettings } from "./config";
import { Debouncer } from "./debounce";
import { languageInfo } from "./languages";
import type { GeexLog } from "./log";
import type { Services } from "./services";
import { completionMode, cutCompletion, stopSequences, type CursorContext } from "./stops";

/** The status bar's name for what this provider does. */
export const COMPLETING = "completing";

export function registerInlineCompletion(
  context: vscode.ExtensionContext,
  services: Services,
  log: GeexLog,
): GeexInlineCompletionProvider {
  const provider = new GeexInlineCompletionProvider(services, log);
  context.subscriptions.push(
    provider,
    vscode.languages.registerInlineCompletionItemProvider({ pattern: "**" }, provider),
    // Another server, model or token limit answers differently: what is cached no longer holds.
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("geex")) provider.forget();
    }),
  );
  return provider;
}

/** The document around the cursor, as a request and the cutting rules need it. */
interface Surroundings extends CursorContext {
  prefix: string;
}

export class GeexInlineCompletionProvider
  implements vscode.InlineCompletionItemProvider, vscode.Disposable
{
  private readonly debouncer = new Debouncer();
  private readonly cache = new CompletionCache(64);
  private inFlight: AbortController | undefined;

  constructor(
    private readonly services: Services,
    private readonly log: GeexLog,
  ) {}

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    const settings = this.services.settings();
    if (!completionEnabledFor(settings, document.languageId)) return undefined;
    // This request replaces any older one, even when the cache answers it: the server stops
    // generating what nobody will see.
    this.inFlight?.abort();
    this.inFlight = undefined;
    const around = surroundings(document, position);
    const cacheLanguage = document.languageId;
    const cached = this.cache.get(cacheLanguage, around.prefix, around.suffix);
    if (cached !== undefined) return items(cached, position);

    const controller = new AbortController();
    this.inFlight = controller;
    const cancelled = token.onCancellationRequested(() => {
      controller.abort();
    });
    try {
      const invoked = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
      if (invoked) this.debouncer.cancel();
      else if (!(await this.debouncer.wait(settings.debounceMs, token))) return undefined;
      if (controller.signal.aborted || token.isCancellationRequested) return undefined;
      const text = await this.services.activity.track(COMPLETING, () =>
        this.fetchCompletion(around, settings, controller.signal),
      );
      this.cache.set(cacheLanguage, around.prefix, around.suffix, text);
      this.log.succeeded(COMPLETING);
      return items(text, position);
    } catch (error) {
      if (controller.signal.aborted) return undefined;
      this.log.failed(COMPLETING, error);
      return undefined;
    } finally {
      cancelled.dispose();
      if (this.inFlight === controller) this.inFlight = undefined;
    }
  }

  /** The model's completion, cut where the cursor's line or block ends. */
  private async fetchCompletion(
    around: Surroundings,
    settings: GeexSettings,
    signal: AbortSignal,
  ): Promise<string> {
    const mode = completionMode(around.lineBefore, around.lineAfter);
    const [choice] = await this.services.client.complete(
      {
        prefix: around.prefix,
        suffix: around.suffix,
        language: around.language,
        maxTokens: settings.completionMaxTokens,
        stop: stopSequences(mode, around.language),
        temperature: 0,
      },
      signal,
    );
    return cutCompletion(choice?.text ?? "", around);
  }

  /** Drops every cached completion. */
  forget(): void {
    this.cache.clear();
  }

  dispose(): void {
    this.inFlight?.abort();
    this.cache.clear();
  }
}

/** The text before and after the cursor, no more of it than the client sends. */
function surroundings(document: vscode.TextDocument, position: vscode.Position): Surroundings {
  const offset = document.offsetAt(position);
  const start = document.positionAt(Math.max(0, offset - MAX_PREFIX_CHARS));
  const end = document.positionAt(offset + MAX_SUFFIX_CHARS);
  const line = document.lineAt(position.line).text;
  return {
    prefix: document.getText(new vscode.Range(start, position)),
    suffix: document.getText(new vscode.Range(position, end)),
    lineBefore: line.slice(0, position.character),
    lineAfter: line.slice(position.character),
    language: languageInfo(document.languageId)?.geex,
  };
}

function items(text: string, position: vscode.Position): vscode.InlineCompletionItem[] {
  if (!text) return [];
  return [new vscode.InlineCompletionItem(text, new vscode.Range(position, position))];
}

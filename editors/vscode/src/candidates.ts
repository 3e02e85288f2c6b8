/**
 * Candidates on demand (CodeGeeX's "interactive mode", `geex.showCandidates`, Ctrl+Enter):
 * several sampled completions of the code around the cursor, side by side in one panel, each
 * insertable at the place the command was run from.
 *
 * The place is kept with the document's version: clicking Insert moves the focus to the panel,
 * and if the user typed in the document meanwhile, the candidates were written for text that
 * is no longer there, so they are not inserted (the user is told to ask again).
 */
import { basename } from "node:path";
import * as vscode from "vscode";
import { editTarget, replaceInEditor, textAround, unchanged, type EditTarget } from "./editing";
import { languageInfo } from "./languages";
import type { Services } from "./services";
import { runUserRequest } from "./userRequest";
import {
  escapeHtml,
  isIndex,
  onMessages,
  pageHtml,
  panelOptions,
  type RawMessage,
} from "./webview";

export const SHOW_CANDIDATES = "geex.showCandidates";

/** The panel's one message: insert the candidate at this index. */
interface InsertCandidate {
  type: "insert";
  index: number;
}

/** The extension's one message to the page: the candidate at this index was not inserted. */
export interface CandidatesPanelMessage {
  type: "refused";
  index: number;
}

/** What the panel shows, and where its candidates go. */
interface Shown {
  target: EditTarget;
  position: vscode.Position;
  candidates: string[];
}

export function registerCandidates(
  context: { extensionUri: vscode.Uri },
  services: Services,
): vscode.Disposable {
  const panel = new CandidatesPanel(context.extensionUri, services);
  return vscode.Disposable.from(
    panel,
    vscode.commands.registerCommand(SHOW_CANDIDATES, () => panel.showCandidates()),
  );
}

/** The candidates a user can tell apart: empty ones dropped, each text once, in order. */
export function distinctCandidates(texts: readonly string[]): string[] {
  const distinct = new Set<string>();
  for (const text of texts) {
    const candidate = text.trimEnd();
    if (candidate.trim()) distinct.add(candidate);
  }
  return [...distinct];
}

class CandidatesPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private shown: Shown | undefined;
  /** The request in flight: a newer one cancels it. */
  private latest: AbortController | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly services: Services,
  ) {}

  async showCandidates(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage(
        "Geex: open a file and put the cursor where the code should go, then ask for candidates",
      );
      return;
    }
    const settings = this.services.settings();
    const position = editor.selection.active;
    const target = editTarget(editor);
    this.latest?.abort();
    const latest = new AbortController();
    this.latest = latest;
    const completions = await runUserRequest(
      this.services,
      {
        activity: "candidates",
        title: `Geex: asking for ${settings.candidateCount} candidates`,
        signal: latest.signal,
      },
      (signal) =>
        this.services.client.complete(
          {
            ...textAround(editor.document, position),
            language: languageInfo(editor.document.languageId)?.geex,
            maxTokens: settings.completionMaxTokens,
            stop: [],
            n: settings.candidateCount,
            temperature: settings.candidateTemperature,
          },
          signal,
        ),
    );
    if (completions === undefined || latest !== this.latest) return;
    this.latest = undefined;
    const shown = {
      target,
      position,
      candidates: distinctCandidates(completions.map((c) => c.text)),
    };
    this.shown = shown;
    const panel = this.revealPanel();
    panel.webview.html = pageHtml(panel.webview, this.extensionUri, {
      title: "Geex Candidates",
      script: "candidates.js",
      body: candidatesBody(shown),
    });
  }

  private revealPanel(): vscode.WebviewPanel {
    if (this.panel) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
      return this.panel;
    }
    const panel = vscode.window.createWebviewPanel(
      "geex.candidates",
      "Geex Candidates",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      panelOptions(this.extensionUri),
    );
    const messages = onMessages(panel.webview, parseMessage, (message) =>
      this.insert(message.index),
    );
    panel.onDidDispose(() => {
      messages.dispose();
      this.panel = undefined;
      this.shown = undefined;
    });
    this.panel = panel;
    return panel;
  }

  private async insert(index: number): Promise<void> {
    const shown = this.shown;
    const candidate = shown?.candidates[index];
    if (!shown || candidate === undefined) return;
    if (!unchanged(shown.target)) {
      void vscode.window.showWarningMessage(
        "Geex: the document changed (or was closed) since the candidates were asked for, so " +
          "they may no longer fit there: run Geex: Show Completion Candidates again",
      );
      this.refuse(index);
      return;
    }
    const { position } = shown;
    const editor = await replaceInEditor(
      shown.target,
      new vscode.Range(position, position),
      candidate,
    );
    if (!editor) {
      void vscode.window.showErrorMessage("Geex: VS Code did not insert the candidate");
      this.refuse(index);
      return;
    }
    const end = editor.document.positionAt(editor.document.offsetAt(position) + candidate.length);
    editor.selection = new vscode.Selection(end, end);
    this.panel?.dispose();
  }

  /** Tells the page the candidate was not inserted: its Insert button, disabled on the click,
   * works again. */
  private refuse(index: number): void {
    const message: CandidatesPanelMessage = { type: "refused", index };
    void this.panel?.webview.postMessage(message);
  }

  dispose(): void {
    this.latest?.abort();
    this.panel?.dispose();
  }
}

function parseMessage(message: RawMessage): InsertCandidate | undefined {
  return message.type === "insert" && isIndex(message.index)
    ? { type: "insert", index: message.index }
    : undefined;
}

/** The panel's body: where the candidates go, then each as a code block with Insert. */
function candidatesBody({ target, position, candidates }: Shown): string {
  const where = `${basename(target.document.fileName)}, line ${position.line + 1}, column ${
    position.character + 1
  }`;
  const count = candidates.length === 1 ? "1 candidate" : `${candidates.length} candidates`;
  const header = `<header><h1>${count}</h1><p class="where">for ${escapeHtml(where)}</p></header>`;
  if (candidates.length === 0) {
    return (
      header +
      '<p class="empty">The model had nothing to add here. Write a little more (a comment ' +
      "saying what comes next, a function's first line) and ask again.</p>"
    );
  }
  const blocks = candidates.map(
    (candidate, index) =>
      `<section class="candidate"><div class="actions"><span class="label">Candidate ${
        index + 1
      }</span><button data-action="insert" data-index="${index}">Insert</button></div>` +
      `<pre><code>${escapeHtml(candidate)}</code></pre></section>`,
  );
  return header + blocks.join("\n");
}

/**
 * Ask (`geex.ask`, Ctrl+Alt+A): a chat panel beside the code. Run with a selection, the
 * command attaches it as the context of the questions that follow (until removed or replaced);
 * each answer streams in from the server's `ask` task and shows as it arrives, with a Stop
 * button, and each code block of an answer can be inserted at the cursor or copied.
 *
 * The `ask` task takes one question and its context, so the conversation's earlier turns are
 * kept in the panel for the user to read (until it is closed), not sent with the next question.
 * The extension holds the conversation and renders it (escaped); the page's script shows what
 * it is sent, and asks for all of it again when VS Code reloads a hidden page.
 */
import * as vscode from "vscode";
import { placeOf } from "./editing";
import { renderAnswer } from "./markdown";
import { languageInfo } from "./languages";
import type { Services } from "./services";
import { cutAtMaxTokens, isAbort, readPieces } from "./userRequest";
import {
  escapeHtml,
  isIndex,
  onMessages,
  pageHtml,
  panelOptions,
  type RawMessage,
} from "./webview";

export const ASK = "geex.ask";

/** The code the questions are about, and where it came from. */
interface AskContext {
  code: string;
  /** The server's language name, if Geex knows the document's language. */
  language: string | undefined;
  place: string;
}

interface Turn {
  id: number;
  question: string;
  context: AskContext | undefined;
  answer: string;
  state: "streaming" | "done" | "stopped" | "failed";
  error?: string;
  /** The token limit the answer reached, if it did. */
  cutAt?: number;
}

/** The page's messages: one per button, the question, and "ready" (send me everything). */
type PageMessage =
  | { type: "ready" | "stop" | "dropContext" }
  | { type: "ask"; question: string }
  | { type: "insert" | "copy"; turn: number; block: number };

/** The extension's messages to the page: HTML it rendered, and whether an answer is running. */
export type AskPanelMessage =
  | { type: "turn"; id: number; html: string }
  | { type: "context"; html: string }
  | { type: "busy"; busy: boolean };

export function registerAsk(
  context: { extensionUri: vscode.Uri },
  services: Services,
): vscode.Disposable {
  const panel = new AskPanel(context.extensionUri, services);
  return vscode.Disposable.from(
    panel,
    vscode.commands.registerCommand(ASK, () => {
      panel.open();
    }),
  );
}

class AskPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private readonly turns: Turn[] = [];
  private context: AskContext | undefined;
  private running: { turn: Turn; controller: AbortController } | undefined;
  /** Where "Insert at cursor" goes: the text editor that had the focus last. */
  private lastEditor: vscode.TextEditor | undefined;
  private readonly editorWatch: vscode.Disposable;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly services: Services,
  ) {
    this.editorWatch = vscode.window.onDidChangeActiveTextEditor((editor) => {
      if (editor) this.lastEditor = editor;
    });
  }

  /** Shows the panel; a selection in the active editor becomes the context. */
  open(): void {
    const editor = vscode.window.activeTextEditor;
    if (editor) {
      this.lastEditor = editor;
      const code = editor.document.getText(editor.selection);
      if (code.trim()) this.context = contextOf(editor, code);
    }
    if (this.panel) this.panel.reveal(vscode.ViewColumn.Beside);
    else this.panel = this.createPanel();
    this.post(contextMessage(this.context));
  }

  private createPanel(): vscode.WebviewPanel {
    const panel = vscode.window.createWebviewPanel(
      "geex.ask",
      "Geex: Ask",
      vscode.ViewColumn.Beside,
      panelOptions(this.extensionUri),
    );
    panel.webview.html = pageHtml(panel.webview, this.extensionUri, {
      title: "Geex: Ask",
      script: "ask.js",
      body: ASK_BODY,
    });
    const messages = onMessages(panel.webview, parseMessage, (message) => this.handle(message));
    panel.onDidDispose(() => {
      // Closing the panel ends the conversation: the next Ask starts a new one.
      messages.dispose();
      this.panel = undefined;
      this.running?.controller.abort();
      this.running = undefined;
      this.turns.length = 0;
    });
    return panel;
  }

  private async handle(message: PageMessage): Promise<void> {
    switch (message.type) {
      case "ready":
        this.post(contextMessage(this.context));
        for (const turn of this.turns) this.post(turnMessage(turn));
        this.post({ type: "busy", busy: this.running !== undefined });
        return;
      case "ask":
        return this.ask(message.question);
      case "stop":
        this.running?.controller.abort();
        return;
      case "dropContext":
        this.context = undefined;
        this.post(contextMessage(undefined));
        return;
      case "insert":
      case "copy":
        return this.useCode(message.type, message.turn, message.block);
    }
  }

  private async ask(question: string): Promise<void> {
    if (!question.trim()) return;
    this.running?.controller.abort();
    const turn: Turn = {
      id: this.turns.length,
      question: question.trim(),
      context: this.context,
      answer: "",
      state: "streaming",
    };
    this.turns.push(turn);
    const running = { turn, controller: new AbortController() };
    this.running = running;
    this.post(turnMessage(turn));
    this.post({ type: "busy", busy: true });
    const settings = this.services.settings();
    try {
      await this.services.activity.track("asking", async () => {
        const pieces = this.services.client.streamTask(
          "ask",
          {
            question: turn.question,
            context: turn.context?.code ?? "",
            language: turn.context?.language,
            natural_language: settings.naturalLanguage,
            max_tokens: settings.taskMaxTokens,
          },
          running.controller.signal,
        );
        const finishReason = await readPieces(pieces, (piece) => {
          turn.answer += piece;
          this.post(turnMessage(turn));
          return true;
        });
        if (finishReason === "length") turn.cutAt = settings.taskMaxTokens;
      });
      turn.state = "done";
    } catch (error) {
      turn.state = isAbort(error) ? "stopped" : "failed";
      turn.error = error instanceof Error ? error.message : String(error);
    } finally {
      if (this.running === running) {
        this.running = undefined;
        this.post({ type: "busy", busy: false });
      }
    }
    // Closing the panel ended the conversation: a panel opened since holds another one, whose
    // turns reuse the ids, so a turn stopped by the closing is not its to show.
    if (this.turns[turn.id] === turn) this.post(turnMessage(turn));
  }

  private async useCode(action: "insert" | "copy", turnId: number, block: number): Promise<void> {
    const turn = this.turns[turnId];
    const code = turn && renderAnswer(turn.answer, turn.id).codeBlocks[block];
    if (code === undefined) return;
    if (action === "copy") {
      await vscode.env.clipboard.writeText(code);
      return;
    }
    const editor = vscode.window.activeTextEditor ?? this.lastEditor;
    if (!editor || editor.document.isClosed) {
      void vscode.window.showInformationMessage(
        "Geex: open a file and put the cursor where the code should go, then click Insert again",
      );
      return;
    }
    // The editor's cursor, read before showing it again moves the focus out of the panel.
    const cursor = editor.selection.active;
    const shown = await vscode.window.showTextDocument(editor.document, {
      viewColumn: editor.viewColumn,
    });
    const inserted = await shown.edit((edit) => {
      edit.insert(cursor, code);
    });
    if (!inserted) void vscode.window.showErrorMessage("Geex: VS Code did not insert the code");
  }

  private post(message: AskPanelMessage): void {
    void this.panel?.webview.postMessage(message);
  }

  dispose(): void {
    this.running?.controller.abort();
    this.editorWatch.dispose();
    this.panel?.dispose();
  }
}

function contextOf(editor: vscode.TextEditor, code: string): AskContext {
  return {
    code,
    language: languageInfo(editor.document.languageId)?.geex,
    place: placeOf(editor.document, editor.selection),
  };
}

function parseMessage(message: RawMessage): PageMessage | undefined {
  switch (message.type) {
    case "ready":
    case "stop":
    case "dropContext":
      return { type: message.type };
    case "ask":
      return typeof message.question === "string"
        ? { type: "ask", question: message.question }
        : undefined;
    case "insert":
    case "copy":
      return isIndex(message.turn) && isIndex(message.block)
        ? { type: message.type, turn: message.turn, block: message.block }
        : undefined;
    default:
      return undefined;
  }
}

function turnMessage(turn: Turn): AskPanelMessage {
  return { type: "turn", id: turn.id, html: turnHtml(turn) };
}

/** A question (with its context) and its answer so far. */
function turnHtml(turn: Turn): string {
  const question = turn.question.split("\n").map(escapeHtml).join("<br>");
  const context = turn.context
    ? `<details class="context"><summary>About ${escapeHtml(turn.context.place)}</summary>` +
      `<pre><code>${escapeHtml(turn.context.code)}</code></pre></details>`
    : "";
  const ending = {
    streaming: '<p class="note typing">Geex is writing…</p>',
    done:
      turn.cutAt === undefined
        ? ""
        : `<p class="note">The answer ${escapeHtml(cutAtMaxTokens(turn.cutAt))}.</p>`,
    stopped: '<p class="note">Stopped.</p>',
    failed: `<p class="error">${escapeHtml(turn.error ?? "failed")}</p>`,
  }[turn.state];
  const answer = renderAnswer(turn.answer, turn.id).html;
  return (
    `<div class="question"><div class="who">You</div><p>${question}</p>${context}</div>` +
    `<div class="answer"><div class="who">Geex</div>${answer}${ending}</div>`
  );
}

function contextMessage(context: AskContext | undefined): AskPanelMessage {
  const html = context
    ? `<div class="chip"><span>Context: ${escapeHtml(context.place)}</span>` +
      '<button data-action="dropContext" title="Ask without this code">Remove</button></div>' +
      `<pre><code>${escapeHtml(context.code)}</code></pre>`
    : "";
  return { type: "context", html };
}

const ASK_BODY = `<main id="conversation" aria-live="polite">
<p class="hint" id="hint">Ask Geex about code. Select code in the editor and run <b>Geex: Ask</b>
(Ctrl+Alt+A) to attach it to your questions. Earlier questions stay here to read; each
question is answered on its own, with the attached code.</p>
</main>
<footer>
<div id="context"></div>
<form id="ask-form">
<textarea id="question" rows="3" placeholder="Ask a question (Enter sends, Shift+Enter starts a new line)"></textarea>
<div class="buttons"><button type="submit" id="send">Ask</button>
<button type="button" id="stop" class="secondary" hidden>Stop</button></div>
</form>
</footer>`;

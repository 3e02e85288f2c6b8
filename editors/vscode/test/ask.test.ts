/**
 * The Ask panel: context from the selection, streamed answers, Stop, and the code blocks'
 * buttons.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AskPanelMessage } from "../src/ask";
import { activateWithFakeServer, type Activated } from "./activated";
import {
  openEditor,
  Position,
  Selection,
  setActiveEditor,
  testState,
  ViewColumn,
  type TextEditor,
  type WebviewPanel,
} from "./vscode";

const FILE = "def add(a, b):\n    return a + b\n\n\n";
const SELECTION = new Selection(new Position(0, 0), new Position(2, 0));

let extension: Activated;
let editor: TextEditor;

beforeEach(async () => {
  extension = await activateWithFakeServer();
  editor = openEditor(FILE, "python", SELECTION);
});
afterEach(async () => {
  await extension.stop();
});

function panel(): WebviewPanel {
  expect(testState.panels).toHaveLength(1);
  return testState.panels[0] as WebviewPanel;
}

function sent(): AskPanelMessage[] {
  return panel().sent as AskPanelMessage[];
}

/** The HTML of each version of a turn the panel was sent, in order. */
function turnVersions(id: number): string[] {
  return sent().flatMap((m) => (m.type === "turn" && m.id === id ? [m.html] : []));
}

/** Whether the panel was last told that no answer is running. */
function idle(): boolean {
  const last = sent()
    .filter((m) => m.type === "busy")
    .at(-1);
  return last?.type === "busy" && !last.busy;
}

async function ask(question: string): Promise<void> {
  panel().receive({ type: "ask", question });
  await expect.poll(idle).toBe(true);
}

describe("geex.ask", () => {
  it("opens one panel beside, with the selection attached as context", async () => {
    await extension.run("geex.ask");
    await extension.run("geex.ask");
    expect(panel().viewColumn).toBe(ViewColumn.Beside);
    const context = sent().find((m) => m.type === "context");
    expect(context?.type === "context" && context.html).toContain("example.python, lines 1-2");
    expect(panel().webview.html).toContain('<textarea id="question"');
  });

  it("asks with the question, the context and its language, and streams the answer in order", async () => {
    const pieces = ["It adds ", "`a` and `b`", " and returns the sum."];
    extension.server.task("ask", pieces);
    await extension.run("geex.ask");
    await ask("What does it do?");
    const [request] = extension.server.requestsTo("POST /v1/tasks/ask");
    expect(request?.body).toEqual({
      question: "What does it do?",
      context: "def add(a, b):\n    return a + b\n",
      language: "python",
      natural_language: "en",
      max_tokens: 512,
      stream: true,
    });
    const versions = turnVersions(0);
    const shown = [
      "It adds ",
      "It adds <code>a</code> and <code>b</code>",
      "It adds <code>a</code> and <code>b</code> and returns the sum.",
    ];
    // The question alone, then one version per piece, then the finished answer.
    expect(versions).toHaveLength(pieces.length + 2);
    shown.forEach((text, index) => {
      expect(versions[index + 1]).toContain(`<p>${text}</p>`);
    });
    expect(versions.at(-1)).not.toContain("Geex is writing");
    expect(versions[1]).toContain("Geex is writing");
  });

  it("asks without context once the context is removed, and keeps earlier turns", async () => {
    extension.server.task("ask", ["Yes."]);
    await extension.run("geex.ask");
    await ask("Is this Python?");
    panel().receive({ type: "dropContext" });
    await ask("Is the sky blue?");
    const [first, second] = extension.server.requestsTo("POST /v1/tasks/ask");
    expect(first?.body?.context).toBe("def add(a, b):\n    return a + b\n");
    expect(second?.body).toMatchObject({ question: "Is the sky blue?", context: "" });
    expect(second?.body).not.toHaveProperty("language");
    expect(turnVersions(0).length).toBeGreaterThan(0);
    expect(turnVersions(1).at(-1)).toContain("<p>Yes.</p>");
  });

  it("stops the request on Stop, keeping what was written", async () => {
    extension.server.task("ask", ["It adds", " two numbers."], 60_000);
    await extension.run("geex.ask");
    panel().receive({ type: "ask", question: "What does it do?" });
    await expect.poll(() => turnVersions(0).at(-1)).toContain("It adds");
    panel().receive({ type: "stop" });
    await expect.poll(idle).toBe(true);
    const [request] = extension.server.requestsTo("POST /v1/tasks/ask");
    await expect.poll(() => request?.aborted).toBe(true);
    expect(turnVersions(0).at(-1)).toContain("<p>It adds</p>");
    expect(turnVersions(0).at(-1)).toContain("Stopped.");
  });

  it("inserts a code block at the cursor of the editor last used, and copies one", async () => {
    extension.server.task("ask", ["Like this:\n```python\nprint(add(1, 2))\n```\n"]);
    await extension.run("geex.ask");
    await ask("How do I call it?");
    expect(turnVersions(0).at(-1)).toContain("Insert at cursor");
    editor.selection = new Selection(new Position(3, 0), new Position(3, 0));
    setActiveEditor(undefined); // the click goes to the panel
    panel().receive({ type: "insert", turn: 0, block: 0 });
    await expect
      .poll(() => editor.document.getText())
      .toBe(`${FILE.trimEnd()}\n\nprint(add(1, 2))\n`);
    panel().receive({ type: "copy", turn: 0, block: 0 });
    await expect.poll(() => testState.clipboard).toBe("print(add(1, 2))");
  });

  it("starts a new conversation once the panel is closed", async () => {
    extension.server.task("ask", ["Yes."]);
    await extension.run("geex.ask");
    await ask("Is this Python?");
    panel().dispose();
    await extension.run("geex.ask");
    const reopened = testState.panels[1];
    reopened?.receive({ type: "ready" });
    const types = reopened?.sent.map((m) => (m as AskPanelMessage).type);
    expect(types).toEqual(["context", "context", "busy"]);
  });

  it("sends nothing of a stopped turn to the panel opened after closing its own", async () => {
    extension.server.task("ask", ["It adds", " two numbers."], 60_000);
    await extension.run("geex.ask");
    panel().receive({ type: "ask", question: "What does it do?" });
    await expect.poll(() => turnVersions(0).at(-1)).toContain("It adds");
    panel().dispose();
    await extension.run("geex.ask");
    const [request] = extension.server.requestsTo("POST /v1/tasks/ask");
    await expect.poll(() => request?.aborted).toBe(true);
    // The status bar stops showing "asking" once the stopped turn has ended.
    await expect.poll(() => testState.statusBarItems[0]?.text).not.toContain("asking");
    const reopened = testState.panels[1];
    expect(reopened?.sent.map((m) => (m as AskPanelMessage).type)).toEqual(["context"]);
  });

  it("notes an answer cut at the token limit", async () => {
    extension.server.routes.set("POST /v1/tasks/ask", () => ({
      stream: [{ text: "It adds" }, { finish_reason: "length" }],
    }));
    await extension.run("geex.ask");
    await ask("What does it do?");
    expect(turnVersions(0).at(-1)).toContain(
      '<p class="note">The answer reached geex.tasks.maxTokens (512 tokens), so it may be ' +
        "incomplete: raise the setting for longer answers.</p>",
    );
  });

  it("shows the server's error in the conversation", async () => {
    extension.server.routes.set("POST /v1/tasks/ask", () => ({
      status: 400,
      error: "question is empty: give the text the task works on",
    }));
    await extension.run("geex.ask");
    await ask("?");
    expect(turnVersions(0).at(-1)).toContain(
      '<p class="error">the Geex server answered 400: question is empty',
    );
  });

  it("shows questions, context and answers as text, never as markup", async () => {
    openEditor("x = '<b>'\n", "python", new Selection(new Position(0, 0), new Position(0, 9)));
    extension.server.task("ask", ["<script>alert(1)</script> and `<img src=x>`"]);
    await extension.run("geex.ask");
    await ask("<i>why</i>?");
    const html = turnVersions(0).at(-1) ?? "";
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain("<code>&lt;img src=x&gt;</code>");
    expect(html).toContain("&lt;i&gt;why&lt;/i&gt;?");
    expect(html).toContain("x = &#39;&lt;b&gt;&#39;");
    expect(html).not.toMatch(/<(script|img|i|b)[ >]/);
  });
});

/** Show Completion Candidates: the request, the panel, and Insert at the place the command ran. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { distinctCandidates } from "../src/candidates";
import { activateWithFakeServer, type Activated } from "./activated";
import {
  openEditor,
  Position,
  Selection,
  setActiveEditor,
  setConfiguration,
  testState,
  ViewColumn,
  type TextEditor,
  type WebviewPanel,
} from "./vscode";

const CODE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n";
const CURSOR = new Position(1, 11); // after "return "

let extension: Activated;
let editor: TextEditor;

beforeEach(async () => {
  extension = await activateWithFakeServer();
  editor = openEditor(CODE, "python", new Selection(CURSOR, CURSOR));
});
afterEach(async () => {
  await extension.stop();
});

function panel(): WebviewPanel {
  expect(testState.panels).toHaveLength(1);
  return testState.panels[0] as WebviewPanel;
}

function insertButtons(html: string): number {
  return html.split('data-action="insert"').length - 1;
}

describe("geex.showCandidates", () => {
  it("asks for n candidates at the set temperature, filling in the middle at the cursor", async () => {
    setConfiguration({ "geex.candidates.count": 4, "geex.candidates.temperature": 0.6 });
    extension.server.completions(() => ["a + b", "b + a"]);
    await extension.run("geex.showCandidates");
    const [request] = extension.server.requestsTo("POST /v1/completions");
    expect(request?.body).toEqual({
      prompt: "def add(a, b):\n    return ",
      suffix: "\n\nprint(add(1, 2))\n",
      language: "python",
      max_tokens: 64,
      n: 4,
      temperature: 0.6,
    });
    expect(panel().viewColumn).toBe(ViewColumn.Beside);
  });

  it("lists each distinct candidate once, dropping empty ones", async () => {
    extension.server.completions(() => ["a + b", "", "a + b\n", "b + a", "  \n"]);
    await extension.run("geex.showCandidates");
    const html = panel().webview.html;
    expect(insertButtons(html)).toBe(2);
    expect(html).toContain("<code>a + b</code>");
    expect(html).toContain("<code>b + a</code>");
    expect(html).toContain("2 candidates");
  });

  it("says so when the model gave nothing but empty candidates", async () => {
    extension.server.completions(() => ["", "\n"]);
    await extension.run("geex.showCandidates");
    expect(insertButtons(panel().webview.html)).toBe(0);
    expect(panel().webview.html).toContain("The model had nothing to add here");
  });

  it("inserts the chosen candidate where the command ran, after the focus moved to the panel", async () => {
    extension.server.completions(() => ["a + b", "b + a"]);
    await extension.run("geex.showCandidates");
    setActiveEditor(undefined); // the click on Insert focuses the panel
    editor.selection = new Selection(new Position(3, 0), new Position(3, 0));
    panel().receive({ type: "insert", index: 1 });
    await expect.poll(() => editor.document.getText()).toContain("return b + a\n");
    expect(editor.document.getText()).toBe(
      "def add(a, b):\n    return b + a\n\nprint(add(1, 2))\n",
    );
    expect(panel().isDisposed).toBe(true);
  });

  it("does not insert into a document that changed since the candidates were asked for", async () => {
    extension.server.completions(() => ["a + b"]);
    await extension.run("geex.showCandidates");
    editor.document.replace(new Selection(new Position(0, 0), new Position(0, 0)), "import math\n");
    const typed = editor.document.getText();
    panel().receive({ type: "insert", index: 0 });
    await expect.poll(() => testState.messages.length).toBe(1);
    expect(testState.messages[0]?.kind).toBe("warning");
    expect(testState.messages[0]?.text).toMatch(/document changed/);
    expect(editor.document.getText()).toBe(typed);
    expect(panel().isDisposed).toBe(false);
    // The page enables the candidate's Insert button again.
    expect(panel().sent).toEqual([{ type: "refused", index: 0 }]);
  });

  it("replaces the one panel's candidates when run again", async () => {
    extension.server.completions(() => ["first"]);
    await extension.run("geex.showCandidates");
    extension.server.completions(() => ["second", "third"]);
    await extension.run("geex.showCandidates");
    const html = panel().webview.html;
    expect(html).not.toContain("first");
    expect(insertButtons(html)).toBe(2);
  });

  it("shows candidates as text, never as markup", async () => {
    extension.server.completions(() => ['"<img src=x onerror=alert(1)>"']);
    await extension.run("geex.showCandidates");
    const html = panel().webview.html;
    expect(html).toContain("&quot;&lt;img src=x onerror=alert(1)&gt;&quot;");
    expect(html).not.toContain("<img");
  });

  it("shows the server's error and opens no panel", async () => {
    extension.server.routes.set("POST /v1/completions", () => ({
      status: 503,
      error: "the engine is busy: 64 requests are queued",
    }));
    await extension.run("geex.showCandidates");
    expect(testState.panels).toHaveLength(0);
    expect(testState.messages).toEqual([
      {
        kind: "error",
        text: "Geex: the Geex server answered 503: the engine is busy: 64 requests are queued",
        items: [],
      },
    ]);
  });
});

describe("distinctCandidates", () => {
  it("keeps the first of candidates that differ only in trailing space, in order", () => {
    expect(distinctCandidates(["b", "a \n", "", "a", "b\n\n", " "])).toEqual(["b", "a"]);
  });
});

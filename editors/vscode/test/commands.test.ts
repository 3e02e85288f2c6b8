/** Translate, Explain and Add Comments on the selection, against a fake geex serve. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { withEndsOf } from "../src/commands";
import { activateWithFakeServer, type Activated } from "./activated";
import {
  closeDocument,
  openEditor,
  Position,
  Selection,
  setConfiguration,
  testState,
  ViewColumn,
  type TextEditor,
} from "./vscode";

const FILE = "import sys\n\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n";
const FUNCTION = "def add(a, b):\n    return a + b\n";
/** The function, lines 3-4 with the line break after it, as a mouse selects whole lines. */
const SELECTION = new Selection(new Position(2, 0), new Position(4, 0));

let extension: Activated;
let editor: TextEditor;

beforeEach(async () => {
  extension = await activateWithFakeServer();
  editor = openEditor(FILE, "python", SELECTION);
});
afterEach(async () => {
  await extension.stop();
});

function shownDocument(index = 0) {
  const shown = testState.shownDocuments[index];
  if (!shown) throw new Error(`no document ${index} was shown`);
  return shown;
}

describe("geex.translate", () => {
  it("asks for the picked language and streams the translation into a new document beside", async () => {
    extension.server.task("translate", ["func add(a, b int) int {\n", "\treturn a + b\n", "}"]);
    testState.quickPickAnswers = ["Go"];
    await extension.run("geex.translate");
    const [request] = extension.server.requestsTo("POST /v1/tasks/translate");
    expect(request?.body).toEqual({
      code: FUNCTION,
      language: "python",
      target: "go",
      max_tokens: 512,
      stream: true,
    });
    const { document, column } = shownDocument();
    expect(column).toBe(ViewColumn.Beside);
    expect(document.languageId).toBe("go");
    expect(document.getText()).toBe("func add(a, b int) int {\n\treturn a + b\n}");
    expect(editor.document.getText()).toBe(FILE);
  });

  it("offers every target but the code's own language, labelled by name", async () => {
    testState.quickPickAnswers = [undefined];
    await extension.run("geex.translate");
    const labels = (testState.quickPickItems[0] as { label: string }[]).map((item) => item.label);
    expect(labels.slice(0, 4)).toEqual(["C++", "Java", "JavaScript", "Go"]);
    expect(labels).not.toContain("Python");
  });

  it("asks nothing when the quick pick is dismissed", async () => {
    testState.quickPickAnswers = [undefined];
    await extension.run("geex.translate");
    expect(extension.server.requests).toHaveLength(0);
    expect(testState.shownDocuments).toHaveLength(0);
  });

  it("stops the server's generation when the notification's Cancel is clicked", async () => {
    extension.server.task("translate", ["func add(", "a, b int) int {"], 60_000);
    testState.quickPickAnswers = ["Go"];
    const running = extension.run("geex.translate");
    await expect.poll(() => shownDocument().document.getText()).toBe("func add(");
    testState.progress[0]?.cancellation.cancel();
    await running;
    const [request] = extension.server.requestsTo("POST /v1/tasks/translate");
    await expect.poll(() => request?.aborted).toBe(true);
    expect(testState.messages).toEqual([]);
  });

  it("stops the server's generation when the translation's document is closed", async () => {
    extension.server.task("translate", ["func add(", "a, b int) int {"], 60_000);
    testState.quickPickAnswers = ["Go"];
    const running = extension.run("geex.translate");
    await expect.poll(() => shownDocument().document.getText()).toBe("func add(");
    closeDocument(shownDocument().document);
    await running;
    const [request] = extension.server.requestsTo("POST /v1/tasks/translate");
    await expect.poll(() => request?.aborted).toBe(true);
    expect(testState.messages).toEqual([]);
  });

  it("says when the translation was cut at the token limit", async () => {
    setConfiguration({ "geex.tasks.maxTokens": 8 });
    extension.server.routes.set("POST /v1/tasks/translate", () => ({
      stream: [{ text: "func add(a, b int) int {" }, { finish_reason: "length" }],
    }));
    testState.quickPickAnswers = ["Go"];
    await extension.run("geex.translate");
    expect(shownDocument().document.getText()).toBe("func add(a, b int) int {");
    expect(testState.messages.map((m) => m.text)).toEqual([
      "Geex: the answer reached geex.tasks.maxTokens (8 tokens), so it may be incomplete: " +
        "raise the setting for longer answers",
    ]);
  });

  it("says what to select when nothing is selected, and asks nothing", async () => {
    editor.selection = new Selection(new Position(3, 4), new Position(3, 4));
    await extension.run("geex.translate");
    expect(testState.messages.map((m) => m.text)).toEqual([
      "Geex: select the code to translate first",
    ]);
    expect(extension.server.requests).toHaveLength(0);
  });

  it("names a document language Geex does not know", async () => {
    openEditor("some notes", "plaintext", new Selection(new Position(0, 0), new Position(0, 4)));
    await extension.run("geex.translate");
    expect(testState.messages[0]?.kind).toBe("error");
    expect(testState.messages[0]?.text).toMatch(/language "plaintext", which Geex does not know/);
    expect(extension.server.requests).toHaveLength(0);
  });
});

describe("geex.explain", () => {
  it("streams the explanation, in the language of the settings, into Markdown beside", async () => {
    setConfiguration({ "geex.naturalLanguage": "zh" });
    extension.server.task("explain", ["这个函数", "返回两个数的和。"]);
    await extension.run("geex.explain");
    const [request] = extension.server.requestsTo("POST /v1/tasks/explain");
    expect(request?.body).toEqual({
      code: FUNCTION,
      language: "python",
      natural_language: "zh",
      max_tokens: 512,
      stream: true,
    });
    const { document, column } = shownDocument();
    expect(column).toBe(ViewColumn.Beside);
    expect(document.languageId).toBe("markdown");
    expect(document.getText()).toBe("## example.python, lines 3-4\n\n这个函数返回两个数的和。");
  });

  it("shows an error in the stream as the server's message, and opens nothing before text", async () => {
    extension.server.routes.set("POST /v1/tasks/explain", () => ({
      stream: [{ error: { message: "the model stopped: out of memory" } }],
    }));
    await extension.run("geex.explain");
    expect(testState.shownDocuments).toHaveLength(0);
    expect(testState.messages.map((m) => m.text)).toEqual([
      "Geex: the model stopped: out of memory",
    ]);
  });
});

describe("geex.addComments", () => {
  const COMMENTED = "def add(a, b):\n    # the sum of a and b\n    return a + b";

  it("replaces the selection with the commented code in one edit", async () => {
    extension.server.task("comment", [COMMENTED]);
    const version = editor.document.version;
    await extension.run("geex.addComments");
    const [request] = extension.server.requestsTo("POST /v1/tasks/comment");
    expect(request?.body).toEqual({
      code: FUNCTION,
      language: "python",
      natural_language: "en",
      max_tokens: 512,
      stream: false,
    });
    expect(editor.document.getText()).toBe(
      "import sys\n\ndef add(a, b):\n    # the sum of a and b\n    return a + b\n\nprint(add(1, 2))\n",
    );
    expect(editor.document.version).toBe(version + 1);
    expect(testState.messages).toEqual([]);
  });

  it("leaves the code alone when the document changed while the comments were written", async () => {
    extension.server.routes.set("POST /v1/tasks/comment", () => {
      editor.document.replace(new Selection(new Position(0, 0), new Position(0, 0)), "# typed\n");
      return { json: { text: COMMENTED, finish_reason: "stop" } };
    });
    await extension.run("geex.addComments");
    expect(editor.document.getText()).toBe(`# typed\n${FILE}`);
    expect(testState.messages[0]?.kind).toBe("warning");
    expect(testState.messages[0]?.text).toMatch(/document changed/);
  });

  it("leaves the code alone when the answer is empty", async () => {
    extension.server.task("comment", ["  \n"]);
    await extension.run("geex.addComments");
    expect(editor.document.getText()).toBe(FILE);
    expect(testState.messages[0]?.text).toMatch(/empty; the code is unchanged/);
  });

  it("leaves the code alone when the answer was cut at the token limit", async () => {
    extension.server.routes.set("POST /v1/tasks/comment", () => ({
      json: { text: "def add(a, b):\n    # the sum", finish_reason: "length" },
    }));
    await extension.run("geex.addComments");
    expect(editor.document.getText()).toBe(FILE);
    expect(testState.messages[0]?.text).toMatch(/geex\.tasks\.maxTokens \(512 tokens\)/);
  });

  it("shows the server's error and leaves the file untouched", async () => {
    extension.server.routes.set("POST /v1/tasks/comment", () => ({
      status: 400,
      error: "the prompt has 9000 tokens; this server takes at most 8000: send less code",
    }));
    await extension.run("geex.addComments");
    expect(editor.document.getText()).toBe(FILE);
    expect(testState.messages).toEqual([
      {
        kind: "error",
        text:
          "Geex: the Geex server answered 400: the prompt has 9000 tokens; this server takes " +
          "at most 8000: send less code",
        items: [],
      },
    ]);
  });
});

describe("withEndsOf", () => {
  it("keeps the selection's blank lines around the commented code", () => {
    expect(withEndsOf("\n\nx = 1\n\n", "x = 1  # one\n")).toBe("\n\nx = 1  # one\n\n");
    expect(withEndsOf("x = 1", "\nx = 1  # one")).toBe("x = 1  # one");
  });
});

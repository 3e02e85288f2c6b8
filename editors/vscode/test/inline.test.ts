// Completion as you type against a real HTTP server that answers like geex serve: debounce,
// cancellation, the fill-in-the-middle request, where completions are cut, and the cache.
// `npx vitest run test/inline.test.ts`.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import * as vscode from "vscode";
import { Activity } from "../src/activity";
import { GeexClient } from "../src/client";
import { readSettings } from "../src/config";
import { GeexInlineCompletionProvider, registerInlineCompletion } from "../src/inline";
import { GeexLog } from "../src/log";
import { FakeGeexServer } from "./fakeServer";
import {
  CancellationTokenSource,
  Position,
  Range,
  TextDocument,
  Uri,
  extensionContext,
  resetVscode,
  setConfiguration,
  testState,
} from "./vscode";

/** Where the cursor is in a test document. */
const CURSOR = "‸";

let server: FakeGeexServer;
let provider: GeexInlineCompletionProvider;
let activity: Activity;
let log: GeexLog;
let context: ReturnType<typeof extensionContext>;

beforeEach(async () => {
  resetVscode();
  server = await new FakeGeexServer().start();
  setConfiguration({ "geex.serverUrl": server.url, "geex.completion.debounceMs": 0 });
  activity = new Activity();
  log = new GeexLog();
  context = extensionContext();
  const services = { client: new GeexClient(readSettings), settings: readSettings, activity };
  provider = registerInlineCompletion(context as unknown as vscode.ExtensionContext, services, log);
});
afterEach(async () => {
  for (const subscription of context.subscriptions) subscription.dispose();
  vi.useRealTimers();
  await server.stop();
});

/** A document whose text has CURSOR where the cursor is, and that position. */
function at(text: string, languageId = "python"): [TextDocument, Position] {
  const offset = text.indexOf(CURSOR);
  if (offset < 0) throw new Error(`the test document has no ${CURSOR}`);
  const document = new TextDocument(
    text.replace(CURSOR, ""),
    languageId,
    Uri.file(`/work/example.${languageId}`),
  );
  return [document, document.positionAt(offset)];
}

function ask(
  document: TextDocument,
  position: Position,
  trigger = vscode.InlineCompletionTriggerKind.Automatic,
  token = new CancellationTokenSource().token,
): Promise<vscode.InlineCompletionItem[] | undefined> {
  return provider.provideInlineCompletionItems(
    document as unknown as vscode.TextDocument,
    position as unknown as vscode.Position,
    { triggerKind: trigger, selectedCompletionInfo: undefined },
    token,
  );
}

/** The text the provider suggests for the document (undefined or [] : nothing). */
async function suggestion(text: string, languageId = "python"): Promise<string | undefined> {
  const items = await ask(...at(text, languageId));
  const insert = items?.[0]?.insertText;
  return typeof insert === "string" ? insert : undefined;
}

const completionRequests = (): ReturnType<FakeGeexServer["requestsTo"]> =>
  server.requestsTo("POST /v1/completions");

describe("registration", () => {
  it("serves every file through one provider, gone when the extension is disposed", () => {
    expect(testState.inlineProviders).toHaveLength(1);
    expect(testState.inlineProviders[0]?.selector).toEqual({ pattern: "**" });
    expect(testState.inlineProviders[0]?.provider).toBe(provider);
    for (const subscription of context.subscriptions) subscription.dispose();
    expect(testState.inlineProviders).toHaveLength(0);
  });
});

describe("the request", () => {
  it("fills in the middle: prefix, suffix, language, max tokens, a one-line stop, greedy", async () => {
    setConfiguration({ "geex.completion.maxTokens": 32 });
    server.completions(() => ["a + b"]);
    const text = `def add(a, b):\n    return ${CURSOR}  # sum\n\nprint(add(1, 2))\n`;
    expect(await suggestion(text)).toBe("a + b");
    expect(completionRequests().map((r) => r.body)).toEqual([
      {
        prompt: "def add(a, b):\n    return ",
        suffix: "  # sum\n\nprint(add(1, 2))\n",
        language: "python",
        max_tokens: 32,
        stop: ["\n"],
        n: 1,
        temperature: 0,
      },
    ]);
  });

  it("asks for a block at an empty line, stopping at the language's top-level lines", async () => {
    server.completions(() => ["return a + b"]);
    await suggestion(`def add(a, b):\n    ${CURSOR}\n`);
    const typescript = `function add(a: number, b: number): number {\n  ${CURSOR}\n}\n`;
    await suggestion(typescript, "typescript");
    await suggestion(`no language tag\n${CURSOR}`, "plaintext-like");
    const [python, ts, unknown] = completionRequests().map((r) => r.body);
    expect(python?.stop).toEqual(["\ndef ", "\nclass ", "\nif __name__", "\nasync def ", "\n\n\n"]);
    expect(ts?.language).toBe("typescript");
    expect(ts?.stop).toContain("\nfunction ");
    expect(unknown?.language).toBeUndefined();
    expect(unknown?.stop).toEqual(["\n\n\n"]);
  });

  it("sends nothing for a language completion is off for, or when it is off", async () => {
    server.completions(() => ["never"]);
    setConfiguration({ "geex.completion.languages": { "*": true, markdown: false } });
    expect(await suggestion(`# Title\n${CURSOR}`, "markdown")).toBeUndefined();
    setConfiguration({ "geex.completion.enabled": false });
    expect(await suggestion(`x = ${CURSOR}`)).toBeUndefined();
    expect(completionRequests()).toHaveLength(0);
    setConfiguration({ "geex.completion.enabled": true });
    expect(await suggestion(`x = ${CURSOR}`)).toBe("never");
  });
});

describe("debounce", () => {
  it("sends one request for three quick ones: the newest", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    setConfiguration({ "geex.completion.debounceMs": 300 });
    server.completions((body) => [`done(${String(body.prompt).length})`]);
    const [document] = at(`x = ${CURSOR}`);
    const first = ask(document, new Position(0, 2));
    const second = ask(document, new Position(0, 3));
    const third = ask(document, new Position(0, 4));
    await vi.advanceTimersByTimeAsync(300);
    expect(await first).toBeUndefined();
    expect(await second).toBeUndefined();
    expect((await third)?.[0]?.insertText).toBe("done(4)");
    expect(completionRequests().map((r) => r.body?.prompt)).toEqual(["x = "]);
  });

  it("sends nothing before the wait is over, and nothing when VS Code cancels it", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    setConfiguration({ "geex.completion.debounceMs": 300 });
    server.completions(() => ["1"]);
    const source = new CancellationTokenSource();
    const pending = ask(...at(`x = ${CURSOR}`), undefined, source.token);
    await vi.advanceTimersByTimeAsync(299);
    expect(completionRequests()).toHaveLength(0);
    source.cancel();
    expect(await pending).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1000);
    expect(completionRequests()).toHaveLength(0);
  });

  it("does not wait when the user asks explicitly (Invoke)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    setConfiguration({ "geex.completion.debounceMs": 5000 });
    server.completions(() => ["42"]);
    const [document, position] = at(`x = ${CURSOR}`);
    const items = await ask(document, position, vscode.InlineCompletionTriggerKind.Invoke);
    expect(items?.[0]?.insertText).toBe("42");
  });
});

describe("cancellation", () => {
  it("closes the connection when VS Code cancels the request in flight", async () => {
    server.completions(() => ["late"], 5000);
    const source = new CancellationTokenSource();
    const pending = ask(...at(`x = ${CURSOR}`), undefined, source.token);
    await expect.poll(() => completionRequests().length).toBe(1);
    source.cancel();
    expect(await pending).toBeUndefined();
    await expect.poll(() => completionRequests()[0]?.aborted).toBe(true);
    expect(log.lastFailure).toBeUndefined();
  });

  it("aborts the older request in flight when a newer one starts", async () => {
    let calls = 0;
    server.completions(
      () => ["fresh"],
      () => (calls++ === 0 ? 5000 : 0),
    );
    const older = ask(...at(`x = ${CURSOR}`));
    await expect.poll(() => completionRequests().length).toBe(1);
    const newer = ask(...at(`y = ${CURSOR}`));
    expect(await older).toBeUndefined();
    expect((await newer)?.[0]?.insertText).toBe("fresh");
    await expect.poll(() => completionRequests()[0]?.aborted).toBe(true);
    expect(completionRequests()[1]?.aborted).toBe(false);
  });
});

describe("where a completion ends", () => {
  it("keeps one line mid-line, without the closing text the line already has", async () => {
    server.completions(() => ["add(1, 2))\nprint('more')"]);
    expect(await suggestion(`print(${CURSOR})\n`)).toBe("add(1, 2)");
  });

  it("shows nothing for whitespace or for what already follows the cursor", async () => {
    server.completions(() => [")"]);
    expect(await ask(...at(`print(x${CURSOR})\n`))).toEqual([]);
    server.completions(() => ["   \n  "]);
    expect(await ask(...at(`x = ${CURSOR}\n`))).toEqual([]);
  });

  it("ends a Python block where a line dedents below it", async () => {
    server.completions(() => ["total = a + b\n    return total\nprint(add(1, 2))\n"]);
    expect(await suggestion(`def add(a, b):\n    ${CURSOR}\n`)).toBe(
      "total = a + b\n    return total",
    );
  });

  it("ends a block at a blank line before a top-level line", async () => {
    server.completions(() => ["def add(a, b):\n    return a + b\n\nx = add(1, 2)\n"]);
    expect(await suggestion(`# add two numbers\n${CURSOR}\n`)).toBe(
      "def add(a, b):\n    return a + b",
    );
  });

  it("ends a brace block at the brace that closes beyond it, counting nested ones", async () => {
    server.completions(() => [
      "if (a > b) {\n    return a;\n  }\n  return b;\n}\n\nfunction sub() {}\n",
    ]);
    const text = `function max(a: number, b: number): number {\n  ${CURSOR}\n}\n`;
    expect(await suggestion(text, "typescript")).toBe(
      "if (a > b) {\n    return a;\n  }\n  return b;",
    );
  });
});

describe("the cache", () => {
  it("asks once for the same place twice", async () => {
    server.completions(() => ["a + b"]);
    const [document, position] = at(`def add(a, b):\n    return ${CURSOR}\n`);
    expect((await ask(document, position))?.[0]?.insertText).toBe("a + b");
    expect((await ask(document, position))?.[0]?.insertText).toBe("a + b");
    expect(completionRequests()).toHaveLength(1);
  });

  it("aborts the request in flight when a cached place answers the newer request", async () => {
    let calls = 0;
    server.completions(
      () => ["a + b"],
      () => (calls++ === 0 ? 0 : 5000),
    );
    const [cachedDocument, cachedPosition] = at(`return ${CURSOR}\n`);
    await ask(cachedDocument, cachedPosition);
    const older = ask(...at(`total = ${CURSOR}\n`));
    await expect.poll(() => completionRequests().length).toBe(2);
    expect((await ask(cachedDocument, cachedPosition))?.[0]?.insertText).toBe("a + b");
    expect(await older).toBeUndefined();
    await expect.poll(() => completionRequests()[1]?.aborted).toBe(true);
  });

  it("keeps the rest of a suggestion as the user types its first characters", async () => {
    server.completions(() => ["compute(1, 2)"]);
    const [document, position] = at(`result = ${CURSOR}\nprint(result)\n`);
    expect((await ask(document, position))?.[0]?.insertText).toBe("compute(1, 2)");
    document.replace(new Range(position, position), "comp");
    const items = await ask(document, position.translate(0, 4));
    expect(items?.[0]?.insertText).toBe("ute(1, 2)");
    expect(completionRequests()).toHaveLength(1);
  });

  it("forgets what it cached when a Geex setting changes", async () => {
    server.completions(() => ["a + b"]);
    const [document, position] = at(`return ${CURSOR}\n`);
    await ask(document, position);
    await vscode.workspace.getConfiguration("geex").update("model", "another-model");
    await ask(document, position);
    expect(completionRequests().map((r) => r.body?.model)).toEqual([undefined, "another-model"]);
  });

  it("asks again when the user types something else", async () => {
    server.completions(() => ["compute(1, 2)"]);
    const [document, position] = at(`result = ${CURSOR}\n`);
    await ask(document, position);
    document.replace(new Range(position, position), "max");
    await ask(document, position.translate(0, 3));
    expect(completionRequests().map((r) => r.body?.prompt)).toEqual(["result = ", "result = max"]);
  });
});

describe("failures", () => {
  it("are logged and kept for the status bar, not popped up", async () => {
    server.routes.set("POST /v1/completions", () => ({ status: 400, error: "no FIM here" }));
    expect(await suggestion(`x = ${CURSOR}`)).toBeUndefined();
    expect(await suggestion(`y = ${CURSOR}`)).toBeUndefined();
    expect(testState.messages).toEqual([]);
    expect(log.lastFailure?.message).toMatch(/400: no FIM here/);
    const lines = testState.outputChannels[0]?.lines.filter((line) => line.includes("no FIM"));
    expect(lines).toHaveLength(1); // the same failure again is not logged twice
    server.completions(() => ["1"]);
    expect(await suggestion(`z = ${CURSOR}`)).toBe("1");
    expect(log.lastFailure).toBeUndefined();
  });
});

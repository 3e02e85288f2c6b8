// The extension against a real `geex serve` at GEEX_E2E_URL, serving a model named tiny-geex
// with the API key GEEX_E2E_API_KEY: the status bar reads its health (and says when the key is
// refused), and inline completion shows the text the model produced, cut by the extension's
// rules. tests/editors/test_vscode_extension.py starts the server and runs
// `GEEX_E2E_URL=... npx vitest run test/serve.e2e.ts`.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as vscode from "vscode";
import { Activity } from "../src/activity";
import { GeexClient } from "../src/client";
import { readSettings } from "../src/config";
import { registerInlineCompletion } from "../src/inline";
import { GeexLog } from "../src/log";
import { registerStatus } from "../src/status";
import { completionMode, cutCompletion, stopSequences } from "../src/stops";
import {
  CancellationTokenSource,
  TextDocument,
  Uri,
  extensionContext,
  resetVscode,
  setConfiguration,
} from "./vscode";

const url = process.env.GEEX_E2E_URL ?? "";
const apiKey = process.env.GEEX_E2E_API_KEY ?? "";
let context: ReturnType<typeof extensionContext>;
let services: { client: GeexClient; settings: typeof readSettings; activity: Activity };
let log: GeexLog;

beforeEach(() => {
  if (!url) throw new Error("GEEX_E2E_URL must name a running geex serve");
  resetVscode();
  setConfiguration({
    "geex.serverUrl": url,
    "geex.apiKey": apiKey,
    "geex.completion.maxTokens": 24,
  });
  context = extensionContext();
  services = {
    client: new GeexClient(readSettings),
    settings: readSettings,
    activity: new Activity(),
  };
  log = new GeexLog();
});
afterEach(() => {
  for (const subscription of context.subscriptions) subscription.dispose();
});

const asExtensionContext = (): vscode.ExtensionContext =>
  context as unknown as vscode.ExtensionContext;

/** What the provider shows with the cursor between `before` and `after` ("" for nothing). */
async function shownAt(before: string, after: string): Promise<string | undefined> {
  const provider = registerInlineCompletion(asExtensionContext(), services, log);
  const document = new TextDocument(before + after, "python", Uri.file("/work/add.py"));
  const items = await provider.provideInlineCompletionItems(
    document as unknown as vscode.TextDocument,
    document.positionAt(before.length) as unknown as vscode.Position,
    { triggerKind: vscode.InlineCompletionTriggerKind.Invoke, selectedCompletionInfo: undefined },
    new CancellationTokenSource().token,
  );
  if (items === undefined) return undefined;
  const text = items[0]?.insertText;
  return typeof text === "string" ? text : "";
}

/** What the provider shows there, and the server's own answer cut by the same rules. */
async function completeAt(before: string, after: string): Promise<[string, string]> {
  const shown = await shownAt(before, after);
  expect(log.lastFailure).toBeUndefined();
  const lineBefore = before.slice(before.lastIndexOf("\n") + 1);
  const lineAfter = after.split("\n")[0] ?? "";
  const [served] = await services.client.complete({
    prefix: before,
    suffix: after,
    language: "python",
    maxTokens: 24,
    stop: stopSequences(completionMode(lineBefore, lineAfter), "python"),
    temperature: 0,
  });
  const cursor = { lineBefore, lineAfter, suffix: after, language: "python" };
  return [shown ?? "", cutCompletion(served?.text ?? "", cursor)];
}

describe("against geex serve", () => {
  it("shows the server's health and model in the status bar", async () => {
    const status = registerStatus(asExtensionContext(), services, log);
    await status.refresh();
    expect(status.item.text).toBe("$(check) Geex tiny-geex");
    expect(status.item.tooltip).toMatch(/Engine: 0 running, 0 queued/);
  });

  it("says the key was refused when completion gets a 401", async () => {
    const status = registerStatus(asExtensionContext(), services, log);
    setConfiguration({ "geex.apiKey": "not-the-key" });
    expect(await shownAt("x = ", "")).toBeUndefined();
    await status.refresh();
    expect(status.item.text).toBe("$(warning) Geex: API key refused");
    expect(status.item.tooltip).toMatch(/401.*geex\.apiKey/);
  });

  it("completes a line with the model's text", async () => {
    const [shown, served] = await completeAt("def add(a, b):\n    return ", "  # sum\n");
    expect(served, "the model completed nothing: the test proves nothing").not.toBe("");
    expect(shown).toBe(served);
    expect(shown).not.toContain("\n");
  });

  it("completes a block with the model's text, cut where the block ends", async () => {
    const [shown, served] = await completeAt("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n");
    expect(served, "the model completed nothing: the test proves nothing").not.toBe("");
    expect(shown).toBe(served);
    const blockLines = shown.split("\n").slice(1);
    for (const line of blockLines.filter((l) => l.trim())) {
      expect(line.startsWith("    "), `a line outside the block: ${line}`).toBe(true);
    }
  });
});

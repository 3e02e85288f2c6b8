/**
 * The candidates and Ask panels as a real `geex serve` at GEEX_E2E_URL fills them (with the
 * API key GEEX_E2E_API_KEY, if it has one), written out for tests/editors/test_vscode_panels.py
 * to load in Chromium: each panel's page, the messages the extension sent it, and the server's
 * answers as the client received them, into GEEX_PANELS_OUT (a new temporary folder without it).
 * It also translates a selection into C++ (`geex.translate`) and writes what the user saw: the
 * selection, the picked language, and the document the translation opened in (translate.json).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import type { ExtensionContext } from "vscode";
import type { TaskBody, TaskName } from "../src/client";
import { activate } from "../src/extension";
import {
  extensionContext,
  openEditor,
  Position,
  resetVscode,
  Selection,
  setConfiguration,
  testState,
  Uri,
  type WebviewPanel,
} from "./vscode";

const server = process.env.GEEX_E2E_URL ?? "";
const out = process.env.GEEX_PANELS_OUT ?? mkdtempSync(join(tmpdir(), "geex-panels-"));
const CODE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n";

function write(name: string, panel: WebviewPanel, answers: unknown): void {
  writeFileSync(join(out, `${name}.html`), panel.webview.html);
  writeFileSync(join(out, `${name}.json`), JSON.stringify({ messages: panel.sent, answers }));
}

describe("the panels, filled by a real server", () => {
  it("writes the candidates and Ask pages with the messages and answers", async () => {
    if (!server) throw new Error("GEEX_E2E_URL must name a running geex serve");
    mkdirSync(out, { recursive: true });
    resetVscode();
    setConfiguration({
      "geex.serverUrl": server,
      "geex.apiKey": process.env.GEEX_E2E_API_KEY ?? "",
      "geex.candidates.count": 3,
      "geex.completion.maxTokens": 16,
      "geex.tasks.maxTokens": 32,
    });
    // The pages load media/ from this folder, as VS Code loads them from the extension's.
    const context = { ...extensionContext(), extensionUri: Uri.file(resolve(__dirname, "..")) };
    const services = activate(context as unknown as ExtensionContext);
    const client = services.client;
    const candidates: string[] = [];
    const complete = client.complete.bind(client);
    client.complete = async (request, signal) => {
      const answer = await complete(request, signal);
      candidates.push(...answer.map((completion) => completion.text));
      return answer;
    };
    const pieces: string[] = [];
    const streamTask = client.streamTask.bind(client);
    client.streamTask = async function* (task: TaskName, body: TaskBody, signal?: AbortSignal) {
      const stream = streamTask(task, body, signal);
      for (let step = await stream.next(); ; step = await stream.next()) {
        if (step.done) return step.value;
        pieces.push(step.value);
        yield step.value;
      }
    };
    const run = async (command: string) => {
      await testState.commands.get(command)?.();
    };

    const cursor = new Position(1, 11);
    openEditor(CODE, "python", new Selection(cursor, cursor), "/work/add.py");
    await run("geex.showCandidates");
    expect(testState.messages).toEqual([]);
    write("candidates", testState.panels[0] as WebviewPanel, candidates);

    // Plain text: a base model asked about Python writes comments, and a tiny random model
    // writes none, so the question goes without a language (a plain question and answer).
    openEditor(
      CODE,
      "plaintext",
      new Selection(new Position(0, 0), new Position(2, 0)),
      "/work/add.txt",
    );
    await run("geex.ask");
    const ask = testState.panels[1] as WebviewPanel;
    ask.receive({ type: "ask", question: "What does add return?" });
    await expect
      .poll(() => ask.sent.filter((m) => (m as { type: string }).type === "busy").at(-1), {
        timeout: 120_000,
      })
      .toEqual({ type: "busy", busy: false });
    write("ask", ask, pieces);

    const selection = new Selection(new Position(0, 0), new Position(2, 0));
    const source = openEditor(CODE, "python", selection, "/work/add.py");
    testState.quickPickAnswers = ["C++"];
    testState.messages = [];
    await run("geex.translate");
    // A tiny model may write up to the token limit, which the user is told about; nothing else.
    expect(testState.messages.filter((m) => !m.text.includes("geex.tasks.maxTokens"))).toEqual([]);
    const translation = testState.shownDocuments.at(-1)?.document;
    if (!translation) throw new Error("geex.translate opened no document");
    const translated = {
      selection: source.document.getText(selection),
      sourceLanguage: source.document.languageId,
      target: "C++",
      languageId: translation.languageId,
      text: translation.getText(),
    };
    writeFileSync(join(out, "translate.json"), JSON.stringify(translated));
    for (const item of context.subscriptions) item.dispose();
  });
});

/**
 * The commands on the selection, as CodeGeeX's plugin had them: translate it into another
 * language, explain it, add comments to it.
 *
 * They work on the selection only: with nothing selected they say so rather than send the
 * whole file, since a file rarely fits a code model's context and Add Comments would rewrite
 * all of it. Translations and explanations stream into a new document beside the code, which
 * the user can read as it grows and throw away. Comments replace the selection, so they are
 * applied only whole: after the answer is complete, in one undoable edit, and only if the
 * document is as it was when they were asked for.
 */
import * as vscode from "vscode";
import type { TaskBody, TaskName } from "./client";
import { documentEnd, editTarget, placeOf, replaceInDocument, unchanged } from "./editing";
import { languageInfo, TRANSLATION_TARGETS, type LanguageInfo } from "./languages";
import type { Services } from "./services";
import { cutAtMaxTokens, readPieces, runUserRequest, type UserRequest } from "./userRequest";

export function registerSelectionCommands(services: Services): vscode.Disposable {
  return vscode.Disposable.from(
    vscode.commands.registerCommand("geex.translate", () => translate(services)),
    vscode.commands.registerCommand("geex.explain", () => explain(services)),
    vscode.commands.registerCommand("geex.addComments", () => addComments(services)),
  );
}

const NATURAL_LANGUAGE_NAMES = { en: "English", zh: "Chinese" } as const;

/** The selected code, its place and its language; undefined (the user told why) if none. */
interface SelectedCode {
  editor: vscode.TextEditor;
  range: vscode.Range;
  code: string;
  language: LanguageInfo;
}

function selectedCode(verb: string): SelectedCode | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage(`Geex: open a file and select the code to ${verb}`);
    return undefined;
  }
  const range = new vscode.Range(editor.selection.start, editor.selection.end);
  const code = editor.document.getText(range);
  if (!code.trim()) {
    void vscode.window.showInformationMessage(`Geex: select the code to ${verb} first`);
    return undefined;
  }
  const languageId = editor.document.languageId;
  const language = languageInfo(languageId);
  if (!language) {
    void vscode.window.showErrorMessage(
      `Geex: cannot ${verb} code in the language "${languageId}", which Geex does not know: ` +
        "set the document's language to a programming language (Change Language Mode)",
    );
    return undefined;
  }
  return { editor, range, code, language };
}

function describePlace({ editor, range }: SelectedCode): string {
  return placeOf(editor.document, range);
}

interface TargetItem extends vscode.QuickPickItem {
  languageId: string;
  info: LanguageInfo;
}

async function translate(services: Services): Promise<void> {
  const selected = selectedCode("translate");
  if (!selected) return;
  const source = selected.language;
  const items = TRANSLATION_TARGETS.flatMap((languageId): TargetItem[] => {
    const info = languageInfo(languageId);
    return info && info.geex !== source.geex
      ? [{ label: info.label, description: languageId, languageId, info }]
      : [];
  });
  const target = await vscode.window.showQuickPick(items, {
    title: `Geex: translate ${source.label} into`,
    placeHolder: "The language of the translation",
  });
  if (!target) return;
  await streamIntoNewDocument(
    services,
    { activity: "translating", title: `Geex: translating ${source.label} into ${target.label}` },
    {
      name: "translate",
      body: { code: selected.code, language: source.geex, target: target.info.geex },
      maxTokens: services.settings().taskMaxTokens,
    },
    { language: target.languageId, content: "" },
  );
}

async function explain(services: Services): Promise<void> {
  const selected = selectedCode("explain");
  if (!selected) return;
  const settings = services.settings();
  const place = describePlace(selected);
  await streamIntoNewDocument(
    services,
    {
      activity: "explaining",
      title: `Geex: explaining ${place} in ${NATURAL_LANGUAGE_NAMES[settings.naturalLanguage]}`,
    },
    {
      name: "explain",
      body: {
        code: selected.code,
        language: selected.language.geex,
        natural_language: settings.naturalLanguage,
      },
      maxTokens: settings.taskMaxTokens,
    },
    { language: "markdown", content: `## ${place}\n\n` },
  );
}

/**
 * Streams a task's answer into a new untitled document opened beside the code at its first
 * piece (so a failure before any text leaves no empty document behind). Closing the document
 * stops the request, as the notification's Cancel does.
 */
async function streamIntoNewDocument(
  services: Services,
  request: UserRequest,
  task: { name: TaskName; body: TaskBody; maxTokens: number },
  document: { language: string; content: string },
): Promise<void> {
  await runUserRequest(services, request, async (signal) => {
    const closed = new AbortController();
    let opened: vscode.TextDocument | undefined;
    let finishReason: string | undefined;
    const watch = vscode.workspace.onDidCloseTextDocument((gone) => {
      if (gone === opened) closed.abort();
    });
    try {
      const stream = services.client.streamTask(
        task.name,
        { ...task.body, max_tokens: task.maxTokens },
        AbortSignal.any([signal, closed.signal]),
      );
      finishReason = await readPieces(stream, async (piece) => {
        if (!opened) {
          opened = await vscode.workspace.openTextDocument(document);
          await vscode.window.showTextDocument(opened, {
            viewColumn: vscode.ViewColumn.Beside,
            preview: false,
            preserveFocus: true,
          });
        }
        // Into the document, not its editor: the user may switch tabs while it streams.
        const end = documentEnd(opened);
        return replaceInDocument(opened, new vscode.Range(end, end), piece);
      });
    } finally {
      watch.dispose();
      closed.abort(); // a no-op once the answer is complete; otherwise it stops the server
    }
    if (!opened) {
      void vscode.window.showInformationMessage(`Geex: the model's answer was empty`);
    } else if (finishReason === "length") {
      void vscode.window.showInformationMessage(
        `Geex: the answer ${cutAtMaxTokens(task.maxTokens)}`,
      );
    }
  });
}

async function addComments(services: Services): Promise<void> {
  const selected = selectedCode("comment");
  if (!selected) return;
  const settings = services.settings();
  const target = editTarget(selected.editor);
  const answer = await runUserRequest(
    services,
    {
      activity: "commenting",
      title: `Geex: adding ${NATURAL_LANGUAGE_NAMES[settings.naturalLanguage]} comments to ${describePlace(selected)}`,
    },
    (signal) =>
      services.client.task(
        "comment",
        {
          code: selected.code,
          language: selected.language.geex,
          natural_language: settings.naturalLanguage,
          max_tokens: settings.taskMaxTokens,
        },
        signal,
      ),
  );
  if (!answer) return;
  const warn = (why: string): void => {
    void vscode.window.showWarningMessage(`Geex: ${why}; the code is unchanged`);
  };
  if (!answer.text.trim()) {
    warn("the model's commented code was empty");
  } else if (answer.finishReason === "length") {
    warn(
      `the commented code reached geex.tasks.maxTokens (${settings.taskMaxTokens} tokens) ` +
        "before it was complete: select less code or raise the setting",
    );
  } else if (!unchanged(target)) {
    warn("the document changed while the comments were written, so they no longer fit it");
  } else if (
    !(await replaceInDocument(
      target.document,
      selected.range,
      withEndsOf(selected.code, answer.text),
    ))
  ) {
    void vscode.window.showErrorMessage("Geex: VS Code did not apply the comments");
  }
}

/**
 * The commented code with the selection's own blank lines before and after it: the server
 * trims them, and without them the code after the selection would join its last line.
 */
export function withEndsOf(selection: string, commented: string): string {
  const leading = /^(?:[ \t]*\n)*/.exec(selection)?.[0] ?? "";
  const trailing = /\n\s*$/.exec(selection)?.[0] ?? "";
  return leading + commented.replace(/^(?:[ \t]*\n)*/, "").trimEnd() + trailing;
}

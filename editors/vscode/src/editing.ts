/**
 * The edits the commands make to documents once an answer is in: each is one edit, so one
 * Undo takes it back. By then the focus may be in a panel, or the editor the command ran in
 * hidden behind another tab: edits go to the document, or to its editor shown again.
 */
import { basename } from "node:path";
import * as vscode from "vscode";

export function documentEnd(document: vscode.TextDocument): vscode.Position {
  return document.lineAt(document.lineCount - 1).range.end;
}

/**
 * "example.py, lines 3-7": where a range is, for titles and the Ask panel. A selection that
 * ends at the start of a line (whole lines selected with the mouse) does not count that line.
 */
export function placeOf(document: vscode.TextDocument, range: vscode.Range): string {
  const name = basename(document.fileName);
  const first = range.start.line + 1;
  const last = range.end.character > 0 || range.isEmpty ? range.end.line + 1 : range.end.line;
  return last > first ? `${name}, lines ${first}-${last}` : `${name}, line ${first}`;
}

/** The text before and after a position: what fill in the middle is asked about. */
export function textAround(
  document: vscode.TextDocument,
  position: vscode.Position,
): { prefix: string; suffix: string } {
  return {
    prefix: document.getText(new vscode.Range(new vscode.Position(0, 0), position)),
    suffix: document.getText(new vscode.Range(position, documentEnd(document))),
  };
}

/** Where an edit was asked for: the document, its version then, and the editor's column. */
export interface EditTarget {
  document: vscode.TextDocument;
  version: number;
  viewColumn: vscode.ViewColumn | undefined;
}

export function editTarget(editor: vscode.TextEditor): EditTarget {
  return {
    document: editor.document,
    version: editor.document.version,
    viewColumn: editor.viewColumn,
  };
}

/** Whether the document is as it was when the edit was asked for (no typing since). */
export function unchanged(target: EditTarget): boolean {
  return !target.document.isClosed && target.document.version === target.version;
}

/**
 * Replaces `range` with `text` in one undoable edit, in the document's editor shown again in
 * its column (the focus with it); the editor, or undefined when VS Code refused the edit.
 */
export async function replaceInEditor(
  target: EditTarget,
  range: vscode.Range,
  text: string,
): Promise<vscode.TextEditor | undefined> {
  const editor = await vscode.window.showTextDocument(target.document, {
    viewColumn: target.viewColumn,
    preserveFocus: false,
  });
  const applied = await editor.edit((edit) => {
    edit.replace(range, text);
  });
  return applied ? editor : undefined;
}

/**
 * Replaces `range` with `text` in one undoable edit without an editor, which the user may
 * have hidden meanwhile; whether VS Code applied it.
 */
export async function replaceInDocument(
  document: vscode.TextDocument,
  range: vscode.Range,
  text: string,
): Promise<boolean> {
  const edit = new vscode.WorkspaceEdit();
  edit.replace(document.uri, range, text);
  return vscode.workspace.applyEdit(edit);
}

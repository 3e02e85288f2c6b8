/**
 * What the extension's panels (candidates, Ask) share: their HTML page under a strict Content
 * Security Policy, escaping, and typed messages from their scripts.
 *
 * Pages are built here, in the extension, with every piece of model or user text escaped; the
 * scripts in media/ only place that HTML and report clicks. So the one place that decides what
 * reaches the page is TypeScript that the unit tests read, and a model answer holding
 * `<script>` or `<img onerror>` stays text. The policy allows nothing but the extension's own
 * media files and the page's nonce-bearing script: no CDN, no inline handlers, no network.
 */
import { randomBytes } from "node:crypto";
import * as vscode from "vscode";
import { reportFailure } from "./userRequest";

/** The folder of the panels' scripts and styles, packaged in the .vsix. */
export function mediaFolder(extensionUri: vscode.Uri): vscode.Uri {
  return vscode.Uri.joinPath(extensionUri, "media");
}

/** A panel's options: scripts on, and files readable from media/ only. */
export function panelOptions(
  extensionUri: vscode.Uri,
): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return { enableScripts: true, localResourceRoots: [mediaFolder(extensionUri)] };
}

export interface Page {
  title: string;
  /** The page's script in media/, e.g. "ask.js". */
  script: string;
  /** The body's HTML, every piece of outside text in it escaped by the caller. */
  body: string;
}

/** The whole HTML document of a panel. */
export function pageHtml(webview: vscode.Webview, extensionUri: vscode.Uri, page: Page): string {
  const nonce = randomBytes(18).toString("base64");
  const media = (file: string): string =>
    webview.asWebviewUri(vscode.Uri.joinPath(mediaFolder(extensionUri), file)).toString();
  const policy = [
    "default-src 'none'",
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
    `img-src ${webview.cspSource}`,
    `font-src ${webview.cspSource}`,
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${policy}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" nonce="${nonce}" href="${escapeHtml(media("panel.css"))}">
<title>${escapeHtml(page.title)}</title>
</head>
<body>
${page.body}
<script nonce="${nonce}" src="${escapeHtml(media(page.script))}"></script>
</body>
</html>`;
}

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text as HTML that shows it literally, in element content and in quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ENTITIES[char] ?? char);
}

/** A message from a panel's script: an object with a string `type`, its fields unchecked. */
export type RawMessage = { type: string } & Record<string, unknown>;

export function rawMessage(value: unknown): RawMessage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const type = (value as { type?: unknown }).type;
  return typeof type === "string" ? (value as RawMessage) : undefined;
}

/** Whether a message's field is an index into a list (a script sends numbers it was given). */
export function isIndex(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

/**
 * Calls `handle` with each message of the panel's script that `parse` accepts. A message
 * that does not parse is dropped: the page is ours, so it can only be a stale page's. A
 * failure of `handle` is shown as an error message.
 */
export function onMessages<M>(
  webview: vscode.Webview,
  parse: (message: RawMessage) => M | undefined,
  handle: (message: M) => Promise<void>,
): vscode.Disposable {
  return webview.onDidReceiveMessage((value: unknown) => {
    const raw = rawMessage(value);
    const message = raw && parse(raw);
    if (message !== undefined) handle(message).catch(reportFailure);
  });
}

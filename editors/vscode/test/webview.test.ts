/** The panels' page: a strict Content Security Policy, local files only, escaped text. */
import { describe, expect, it } from "vitest";
import { escapeHtml, pageHtml } from "../src/webview";
import { Uri, WebviewPanel, ViewColumn } from "./vscode";
import type * as vscode from "vscode";

const extensionUri = Uri.file("/extension") as unknown as vscode.Uri;

function page(body = "<p>body</p>"): string {
  const panel = new WebviewPanel("geex.test", "Test", ViewColumn.Beside);
  return pageHtml(panel.webview as unknown as vscode.Webview, extensionUri, {
    title: "Geex <Test>",
    script: "ask.js",
    body,
  });
}

describe("pageHtml", () => {
  it("allows nothing but the extension's media and its own nonce-bearing script", () => {
    const html = page();
    const policy = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1];
    const nonce = /script-src 'nonce-([^']+)'/.exec(policy ?? "")?.[1];
    expect(policy).toMatch(/^default-src 'none'; /);
    expect(nonce).toMatch(/^[A-Za-z0-9+/]{24}$/);
    expect(html).toContain(`<script nonce="${nonce ?? ""}" src="file:///extension/media/ask.js">`);
    expect(html).toContain('href="file:///extension/media/panel.css"');
    expect(policy).not.toContain("unsafe");
  });

  it("loads nothing from the network", () => {
    const html = page();
    expect(html).not.toMatch(/https?:/);
    const sources = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
    expect(sources).toHaveLength(2);
    for (const source of sources) expect(source).toMatch(/^file:\/\/\/extension\/media\//);
  });

  it("draws a new nonce for each page", () => {
    const nonceOf = (html: string) => /nonce-([^']+)'/.exec(html)?.[1];
    expect(nonceOf(page())).not.toBe(nonceOf(page()));
  });

  it("escapes the title", () => {
    expect(page()).toContain("<title>Geex &lt;Test&gt;</title>");
  });
});

describe("escapeHtml", () => {
  it("escapes what could open a tag, an entity or a quoted attribute", () => {
    expect(escapeHtml(`<a href="x" title='y'>&amp;</a>`)).toBe(
      "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;",
    );
  });
});

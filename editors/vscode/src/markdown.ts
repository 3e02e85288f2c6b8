/**
 * The little Markdown a code model's answer uses, as HTML for the Ask panel: fenced code
 * blocks (each with Insert and Copy buttons), `inline code`, paragraphs and line breaks.
 * Everything else (headings, lists, emphasis) stays the text it is, which reads well enough
 * and keeps this renderer small enough to trust: every character of the answer goes through
 * escapeHtml, and the only markup is the renderer's own.
 *
 * An answer is rendered again as each piece arrives, so a fence not yet closed is a code
 * block up to the end: the code shows as code while it streams.
 */
import { escapeHtml } from "./webview";

export interface RenderedAnswer {
  html: string;
  /** The code blocks' text, in order: what Insert and Copy take (by index). */
  codeBlocks: string[];
}

const FENCE = /^\s*```([^`]*)$/;
const FENCE_CLOSE = /^\s*```\s*$/;

/** The answer of turn `turn` as HTML; its buttons name the turn and the block. */
export function renderAnswer(text: string, turn: number): RenderedAnswer {
  const html: string[] = [];
  const codeBlocks: string[] = [];
  let paragraph: string[] = [];
  const endParagraph = (): void => {
    if (paragraph.length > 0) html.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
    paragraph = [];
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const fence = FENCE.exec(line);
    if (!fence) {
      if (line.trim()) paragraph.push(line);
      else endParagraph();
      continue;
    }
    endParagraph();
    const code: string[] = [];
    for (i++; i < lines.length && !FENCE_CLOSE.test(lines[i] ?? ""); i++) code.push(lines[i] ?? "");
    const language = (fence[1] ?? "").trim().split(/\s+/)[0] ?? "";
    html.push(codeBlockHtml(code.join("\n"), language, turn, codeBlocks.length));
    codeBlocks.push(code.join("\n"));
  }
  endParagraph();
  return { html: html.join("\n"), codeBlocks };
}

/** A line of a paragraph: `code` spans as <code>, the rest as text. */
function inline(line: string): string {
  return line
    .split(/(`[^`]+`)/)
    .map((part) =>
      part.length > 2 && part.startsWith("`") && part.endsWith("`")
        ? `<code>${escapeHtml(part.slice(1, -1))}</code>`
        : escapeHtml(part),
    )
    .join("");
}

function codeBlockHtml(code: string, language: string, turn: number, block: number): string {
  const target = `data-turn="${turn}" data-block="${block}"`;
  return (
    `<div class="code-block"><div class="actions"><span class="label">${escapeHtml(language)}</span>` +
    `<button data-action="insert" ${target}>Insert at cursor</button>` +
    `<button data-action="copy" ${target}>Copy</button></div>` +
    `<pre><code>${escapeHtml(code)}</code></pre></div>`
  );
}

/** The Ask panel's Markdown: code fences with their buttons, inline code, paragraphs, escaping. */
import { describe, expect, it } from "vitest";
import { renderAnswer } from "../src/markdown";

describe("renderAnswer", () => {
  it("renders paragraphs, line breaks and inline code", () => {
    const { html, codeBlocks } = renderAnswer("It calls `add`\ntwice.\n\nThat is all.", 0);
    expect(html).toBe("<p>It calls <code>add</code><br>twice.</p>\n<p>That is all.</p>");
    expect(codeBlocks).toEqual([]);
  });

  it("gives each code block Insert and Copy buttons naming the turn and the block", () => {
    const answer = "First:\n```python\nx = 1\n\ny = 2\n```\nThen:\n```\nz = 3\n```";
    const { html, codeBlocks } = renderAnswer(answer, 4);
    expect(codeBlocks).toEqual(["x = 1\n\ny = 2", "z = 3"]);
    expect(html).toContain('<span class="label">python</span>');
    expect(html).toContain('data-action="insert" data-turn="4" data-block="1"');
    expect(html).toContain('data-action="copy" data-turn="4" data-block="0"');
    expect(html).toContain("<pre><code>x = 1\n\ny = 2</code></pre>");
  });

  it("shows a fence still streaming as code up to the end", () => {
    const { html, codeBlocks } = renderAnswer("Here:\n```go\nfunc main() {", 0);
    expect(codeBlocks).toEqual(["func main() {"]);
    expect(html).toContain("<pre><code>func main() {</code></pre>");
  });

  it("escapes the text of paragraphs, inline code, code blocks and fence labels", () => {
    const { html } = renderAnswer('<b>"hi"</b> `<i>`\n```<x>\nif a < b && c > d:\n```', 0);
    expect(html).toContain("&lt;b&gt;&quot;hi&quot;&lt;/b&gt; <code>&lt;i&gt;</code>");
    expect(html).toContain("if a &lt; b &amp;&amp; c &gt; d:");
    expect(html).toContain('<span class="label">&lt;x&gt;</span>');
    expect(html).not.toMatch(/<(b|i|x)>/);
  });
});

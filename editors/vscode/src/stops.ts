/**
 * Where an inline completion ends. A code model writes on until it runs out of tokens, so the
 * extension asks for one line where the cursor sits within a line, and for a block at an empty
 * line, and cuts the block where the language says the cursor's block ends: a dedent below it
 * (Python), a closing brace beyond it (brace languages), a blank line before a top-level line,
 * or a line the text after the cursor already has.
 */

/** "line": the rest of the cursor's line; "block": lines from an empty line on. */
export type CompletionMode = "line" | "block";

/** What is around the cursor, as the cutting rules need it. */
export interface CursorContext {
  /** The cursor's line before the cursor. */
  lineBefore: string;
  /** The cursor's line after the cursor. */
  lineAfter: string;
  /** All the text after the cursor (or its head). */
  suffix: string;
  /** The server's language name (languages.ts), or undefined. */
  language: string | undefined;
}

/** The server's limit on stop sequences (serve_limits.MAX_STOP_SEQUENCES). */
export const MAX_STOP_SEQUENCES = 16;

const INDENTATION_LANGUAGES = new Set(["python"]);

const BRACE_LANGUAGES = new Set([
  "c",
  "cpp",
  "csharp",
  "cuda",
  "java",
  "javascript",
  "typescript",
  "go",
  "rust",
  "kotlin",
  "scala",
  "swift",
  "dart",
  "php",
  "objective-c",
  "objective-cpp",
  "groovy",
  "css",
]);

/** Lines that start a new top-level definition: where a block completion has gone too far. */
const TOP_LEVEL_STARTS: Record<string, readonly string[]> = {
  python: ["\ndef ", "\nclass ", "\nif __name__", "\nasync def "],
  javascript: ["\nfunction ", "\nclass ", "\nexport ", "\nimport "],
  typescript: ["\nfunction ", "\nclass ", "\nexport ", "\nimport ", "\ninterface "],
  go: ["\nfunc ", "\ntype "],
  rust: ["\nfn ", "\npub fn ", "\nimpl ", "\nstruct ", "\nenum "],
};

/** Two blank lines: the end of a block in almost every language's style. */
const BLANK_LINES = "\n\n\n";

export function completionMode(lineBefore: string, lineAfter: string): CompletionMode {
  return lineBefore.trim() === "" && lineAfter.trim() === "" ? "block" : "line";
}

/** The stop sequences the server is sent, so that it stops generating where we would cut. */
export function stopSequences(mode: CompletionMode, language: string | undefined): string[] {
  if (mode === "line") return ["\n"];
  const topLevel = (language && TOP_LEVEL_STARTS[language]) || [];
  return [...topLevel, BLANK_LINES].slice(0, MAX_STOP_SEQUENCES);
}

/**
 * The part of the model's `text` worth showing at the cursor: "" when nothing is (only
 * whitespace, or only what already follows the cursor).
 */
export function cutCompletion(text: string, cursor: CursorContext): string {
  const mode = completionMode(cursor.lineBefore, cursor.lineAfter);
  let cut =
    mode === "line" ? (text.split("\n")[0] ?? "").trimEnd() : cutBlock(text, cursor).trimEnd();
  if (mode === "line") cut = withoutClosingText(cut, cursor.lineAfter);
  if (cut.trim() === "" || cursor.suffix.trimStart().startsWith(cut.trim())) return "";
  return cut;
}

function cutBlock(text: string, cursor: CursorContext): string {
  const language = cursor.language ?? "";
  const byIndentation = INDENTATION_LANGUAGES.has(language);
  const byBraces = BRACE_LANGUAGES.has(language);
  const lines = text.split("\n");
  const firstLine = cursor.lineBefore + (lines[0] ?? "");
  // The block's indentation is its first line's, the text already before the cursor included:
  // a model that indents its first line itself (cursor at column 0 after `def f():`) sets it.
  let blockIndent = firstLine.trim() ? indentation(firstLine) : undefined;
  const repeatedLine = firstMeaningfulLine(cursor.suffix);
  const kept: string[] = [];
  let depth = 0;
  for (const [index, line] of lines.entries()) {
    if (index > 0 && line.trim() !== "") {
      blockIndent ??= indentation(line);
      const afterBlankLine = kept.length > 0 && kept[kept.length - 1]?.trim() === "";
      if (afterBlankLine && indentation(line) === 0) break;
      if (byIndentation && indentation(line) < blockIndent) break;
      if (repeatedLine !== undefined && line.trim() === repeatedLine) break;
    }
    if (byBraces) {
      const scan = scanBraces(line, depth, language === "rust");
      if (scan.closesAt !== undefined) {
        kept.push(line.slice(0, scan.closesAt));
        break;
      }
      depth = scan.depth;
    }
    kept.push(line);
  }
  return kept.join("\n");
}

/**
 * The brace depth after `line`, or where a `}` closes beyond the block the completion began
 * in. Braces in string literals and after `//` do not count.
 */
function scanBraces(
  line: string,
  depth: number,
  apostropheIsLifetime: boolean,
): { depth: number; closesAt?: number } {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote !== undefined) {
      if (char === "\\") i++;
      else if (char === quote) quote = undefined;
      continue;
    }
    if (char === '"' || char === "`" || (char === "'" && !apostropheIsLifetime)) quote = char;
    else if (char === "/" && line[i + 1] === "/") break;
    else if (char === "{") depth++;
    else if (char === "}" && --depth < 0) return { depth, closesAt: i };
  }
  return { depth };
}

/**
 * The completion without the closing brackets it ends with that the line already has after
 * the cursor (`print(|)` completed with `x)` gives `x`), where the completion has more
 * closing brackets than opening ones, so that they really are the line's.
 */
function withoutClosingText(completion: string, lineAfter: string): string {
  const closing = /^[)\]}]+/.exec(lineAfter.trimStart())?.[0] ?? "";
  for (let length = closing.length; length > 0; length--) {
    if (completion.endsWith(closing.slice(0, length)) && unclosed(completion) >= length) {
      return completion.slice(0, -length).trimEnd();
    }
  }
  return completion;
}

function unclosed(text: string): number {
  const count = (pattern: RegExp): number => (text.match(pattern) ?? []).length;
  return count(/[)\]}]/g) - count(/[([{]/g);
}

function indentation(line: string): number {
  return line.length - line.trimStart().length;
}

/** The suffix's first non-blank line, if it says something (not a lone bracket). */
function firstMeaningfulLine(suffix: string): string | undefined {
  const line = suffix
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l !== "");
  return line !== undefined && /[\p{L}\p{N}]/u.test(line) ? line : undefined;
}

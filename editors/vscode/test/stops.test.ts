// Where inline completions are cut, rule by rule, without a server.
// `npx vitest run test/stops.test.ts`.
import { describe, expect, it } from "vitest";
import {
  completionMode,
  cutCompletion,
  MAX_STOP_SEQUENCES,
  stopSequences,
  type CursorContext,
} from "../src/stops";

/** The context of a cursor at CURSOR in `text`. */
function cursorIn(text: string, language: string | undefined): CursorContext {
  const [before = "", after = ""] = text.split("‸");
  return {
    lineBefore: before.slice(before.lastIndexOf("\n") + 1),
    lineAfter: after.split("\n")[0] ?? "",
    suffix: after,
    language,
  };
}

describe("completionMode", () => {
  it("is one line with text before or after the cursor, a block at an empty line", () => {
    expect(completionMode("    return ", "")).toBe("line");
    expect(completionMode("", "  # sum")).toBe("line");
    expect(completionMode("    ", "")).toBe("block");
    expect(completionMode("", " \t")).toBe("block");
  });
});

describe("stopSequences", () => {
  it("stops a line at its end, a block at the language's top-level lines", () => {
    expect(stopSequences("line", "python")).toEqual(["\n"]);
    expect(stopSequences("block", "go")).toEqual(["\nfunc ", "\ntype ", "\n\n\n"]);
    expect(stopSequences("block", undefined)).toEqual(["\n\n\n"]);
    expect(stopSequences("block", "typescript").length).toBeLessThanOrEqual(MAX_STOP_SEQUENCES);
  });
});

describe("cutCompletion", () => {
  it("keeps the first line mid-line and trims trailing whitespace", () => {
    expect(cutCompletion("a + b   \nmore", cursorIn("return ‸", "python"))).toBe("a + b");
  });

  it("drops the closing brackets the line already has, only where they are unmatched", () => {
    const call = cursorIn("print(‸)\n", "python");
    expect(cutCompletion("x)", call)).toBe("x");
    expect(cutCompletion("f(x)", call)).toBe("f(x)");
    expect(cutCompletion("a[0]])", cursorIn("f(b[‸])", "python"))).toBe("a[0]");
  });

  it("drops a completion that is whitespace or repeats the text after the cursor", () => {
    expect(cutCompletion(" \n ", cursorIn("x = ‸", "python"))).toBe("");
    expect(cutCompletion("total", cursorIn("return ‸total\n", "python"))).toBe("");
  });

  it("ends a Python block at a dedent below the block, keeping deeper lines", () => {
    const body = cursorIn("def f(x):\n    ‸\n", "python");
    const text = "if x:\n        return 1\n    return 2\nprint(f(1))";
    expect(cutCompletion(text, body)).toBe("if x:\n        return 1\n    return 2");
  });

  it("takes the block's indentation from a model that indents its first line itself", () => {
    const body = cursorIn("def f(x):\n‸\n", "python");
    expect(cutCompletion("    y = x\n    return y\nf(1)", body)).toBe("    y = x\n    return y");
  });

  it("ends a block at a blank line before a top-level line, in any language", () => {
    const top = cursorIn("-- sums\n‸", "lua");
    const text = "local function sum(a, b)\n  return a + b\nend\n\nprint(sum(1, 2))";
    expect(cutCompletion(text, top)).toBe("local function sum(a, b)\n  return a + b\nend");
  });

  it("ends a brace block at the brace closing beyond it, ignoring braces in strings", () => {
    const body = cursorIn("int f(int a) {\n  ‸\n}\n", "c");
    const text = 'printf("}");\n  if (a) {\n    a++;\n  }\n  return a; }\nint g() {}';
    expect(cutCompletion(text, body)).toBe('printf("}");\n  if (a) {\n    a++;\n  }\n  return a;');
  });

  it("counts Rust's braces past lifetimes", () => {
    const body = cursorIn("impl S {\n    ‸\n}\n", "rust");
    const text = "fn f<'a>(x: &'a str) -> &'a str {\n        x\n    }\n}\nfn main() {}";
    expect(cutCompletion(text, body)).toBe("fn f<'a>(x: &'a str) -> &'a str {\n        x\n    }");
  });

  it("ends a block at a line the text after the cursor already has", () => {
    const body = cursorIn("def f():\n    ‸\n    return total\n", "python");
    expect(cutCompletion("total = 1\n    return total\n", body)).toBe("total = 1");
  });
});

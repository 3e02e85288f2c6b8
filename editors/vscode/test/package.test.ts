/**
 * The manifest and the package: the key bindings leave VS Code's own where they matter, and the
 * .vsix holds what the panels load at run time: every file of media/ (see .vscodeignore).
 */
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = resolve(__dirname, "..");

interface KeyBinding {
  command: string;
  key: string;
  when?: string;
}

describe("the key bindings", () => {
  const manifest = JSON.parse(readFileSync(resolve(root, "package.json"), "utf8")) as {
    contributes: { keybindings: KeyBinding[] };
  };
  const binding = (command: string): KeyBinding | undefined =>
    manifest.contributes.keybindings.find((b) => b.command === command);

  it("take Ctrl+Enter (VS Code's Insert Line Below) only in an editor the user can edit", () => {
    expect(binding("geex.showCandidates")).toMatchObject({
      key: "ctrl+enter",
      when: "editorTextFocus && !editorReadonly",
    });
  });

  it("leave Ctrl+Alt+A to the terminal's shell", () => {
    expect(binding("geex.ask")).toMatchObject({ key: "ctrl+alt+a", when: "!terminalFocus" });
  });
});

describe("the packaged extension", () => {
  it("includes the panels' scripts and stylesheet", async () => {
    const vsce = resolve(root, "node_modules", ".bin", "vsce");
    const { stdout } = await promisify(execFile)(vsce, ["ls"], { cwd: root });
    const packaged = stdout.split("\n").map((line) => line.trim());
    const media = readdirSync(resolve(root, "media")).map((name) => `media/${name}`);
    expect(media.length).toBeGreaterThan(0);
    for (const file of media) expect(packaged).toContain(file);
  }, 120_000);
});

/** The .vsix holds what the panels load at run time: every file of media/ (see .vscodeignore). */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = resolve(__dirname, "..");

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

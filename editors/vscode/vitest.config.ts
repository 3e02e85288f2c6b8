// The extension's unit tests run in Node with `vscode` replaced by test/vscode.ts, a small
// working stand-in for the parts of the API the extension uses.
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { alias: { vscode: resolve(__dirname, "test/vscode.ts") } },
  test: { include: ["test/**/*.test.ts"], environment: "node", testTimeout: 10000 },
});

// The extension's unit tests run in Node with `vscode` replaced by test/vscode.ts, a small
// working stand-in for the parts of the API the extension uses.
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// test/*.e2e.ts drive the extension against a real geex serve at GEEX_E2E_URL; without one
// they are not collected (tests/editors/test_vscode_extension.py starts a server and runs them).
const endToEnd = process.env.GEEX_E2E_URL ? ["test/**/*.e2e.ts"] : [];

export default defineConfig({
  resolve: { alias: { vscode: resolve(__dirname, "test/vscode.ts") } },
  test: {
    include: ["test/**/*.test.ts", ...endToEnd],
    environment: "node",
    testTimeout: 10000,
  },
});

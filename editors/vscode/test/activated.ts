/**
 * The extension activated against a fake geex serve, for the tests of its commands: settings
 * point at the fake server, and `stop` disposes what the extension registered.
 */
import type { ExtensionContext } from "vscode";
import { activate } from "../src/extension";
import { FakeGeexServer } from "./fakeServer";
import { extensionContext, resetVscode, setConfiguration, testState } from "./vscode";

export interface Activated {
  server: FakeGeexServer;
  /** Runs a command as the palette or its key binding does, and waits for it to end. */
  run(command: string): Promise<void>;
  stop(): Promise<void>;
}

export async function activateWithFakeServer(): Promise<Activated> {
  resetVscode();
  const server = await new FakeGeexServer().start();
  setConfiguration({ "geex.serverUrl": server.url });
  const context = extensionContext();
  activate(context as unknown as ExtensionContext);
  return {
    server,
    async run(command) {
      const callback = testState.commands.get(command);
      if (!callback) throw new Error(`the extension registered no command ${command}`);
      await callback();
    },
    async stop() {
      for (const item of context.subscriptions) item.dispose();
      await server.stop();
    },
  };
}

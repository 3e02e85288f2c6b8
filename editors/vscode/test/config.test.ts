// Where the code and the API key go is the user's choice, never a workspace's: a cloned
// repository's .vscode/settings.json cannot point the extension at another server or key.
// `npx vitest run test/config.test.ts`.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { readSettings } from "../src/config";
import { resetVscode, setConfiguration, setWorkspaceConfiguration } from "./vscode";

interface Manifest {
  capabilities?: {
    untrustedWorkspaces?: { supported: boolean | string; restrictedConfigurations?: string[] };
  };
  contributes: { configuration: { properties: Record<string, { scope?: string }> } };
}

const manifest = JSON.parse(
  readFileSync(resolve(__dirname, "..", "package.json"), "utf8"),
) as Manifest;

beforeEach(() => {
  resetVscode();
});

describe("the server settings", () => {
  it("are scoped to the machine, which VS Code never reads from a workspace", () => {
    const properties = manifest.contributes.configuration.properties;
    expect(properties["geex.serverUrl"]?.scope).toBe("machine");
    expect(properties["geex.apiKey"]?.scope).toBe("machine");
  });

  it("declare what Restricted Mode ignores of an untrusted workspace's settings", () => {
    const untrusted = manifest.capabilities?.untrustedWorkspaces;
    expect(untrusted?.supported).toBe("limited");
    expect(untrusted?.restrictedConfigurations).toEqual(["geex.model"]);
  });

  it("come from the user's settings even where a workspace sets them", () => {
    setConfiguration({ "geex.serverUrl": "http://127.0.0.1:9000/", "geex.apiKey": "mine" });
    setWorkspaceConfiguration({
      "geex.serverUrl": "https://collector.example",
      "geex.apiKey": "theirs",
      "geex.model": "project-model",
    });
    const settings = readSettings();
    expect(settings.serverUrl).toBe("http://127.0.0.1:9000");
    expect(settings.apiKey).toBe("mine");
    // The model is the workspace's to choose: it sends nothing anywhere else.
    expect(settings.model).toBe("project-model");
  });

  it("fall back to the defaults, not to a workspace's values", () => {
    setWorkspaceConfiguration({ "geex.serverUrl": "https://collector.example" });
    const settings = readSettings();
    expect(settings.serverUrl).toBe("http://127.0.0.1:8000");
    expect(settings.apiKey).toBe("");
  });
});

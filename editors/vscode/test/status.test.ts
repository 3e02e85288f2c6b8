// The status bar item against a real HTTP server that answers like geex serve: online, running,
// offline, a refused key, the health poll, and the Geex menu. `npx vitest run test/status.test.ts`.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type * as vscode from "vscode";
import { Activity } from "../src/activity";
import { GeexClient, GeexError } from "../src/client";
import { readSettings } from "../src/config";
import { activate } from "../src/extension";
import { GeexLog } from "../src/log";
import { HEALTH_POLL_MS, registerStatus, type GeexStatus } from "../src/status";
import { FakeGeexServer } from "./fakeServer";
import { extensionContext, resetVscode, setConfiguration, testState } from "./vscode";

let server: FakeGeexServer;
let activity: Activity;
let log: GeexLog;
let context: ReturnType<typeof extensionContext>;

beforeEach(async () => {
  resetVscode();
  server = await new FakeGeexServer().start();
  setConfiguration({ "geex.serverUrl": server.url });
  activity = new Activity();
  log = new GeexLog();
  context = extensionContext();
});
afterEach(async () => {
  for (const subscription of context.subscriptions) subscription.dispose();
  vi.useRealTimers();
  await server.stop();
});

/** The status item, just registered (its first health check under way). */
function registerStatusItem(): GeexStatus {
  const services = { client: new GeexClient(readSettings), settings: readSettings, activity };
  return registerStatus(context as unknown as vscode.ExtensionContext, services, log);
}

/** The status item, registered, after a health check it waited for. */
async function startStatus(): Promise<GeexStatus> {
  const status = registerStatusItem();
  await status.refresh();
  return status;
}

const healthRequests = (): number => server.requestsTo("GET /health").length;

describe("the status bar item", () => {
  it("shows the served model when the server is healthy, its engine in the tooltip", async () => {
    server.health(1, 2);
    const { item } = await startStatus();
    expect(item.text).toBe("$(check) Geex tiny-geex");
    expect(item.tooltip).toMatch(/Engine: 1 running, 2 queued/);
    expect(item.tooltip).toMatch(/Completion as you type: on/);
    expect(item.command).toBe("geex.statusMenu");
    expect(testState.statusBarItems[0]?.visible).toBe(true);
  });

  it("spins with what is running while a request is in flight", async () => {
    server.health();
    const { item } = await startStatus();
    let finish = (): void => undefined;
    const running = activity.track("completing", () => new Promise<void>((r) => (finish = r)));
    expect(item.text).toBe("$(sync~spin) Geex: completing");
    finish();
    await running;
    expect(item.text).toBe("$(check) Geex tiny-geex");
  });

  it("says offline, with the reason in the tooltip, when nothing answers", async () => {
    server.health();
    const url = server.url;
    await server.stop();
    const { item } = await startStatus();
    expect(item.text).toBe("$(warning) Geex: offline");
    expect(item.tooltip).toContain(`cannot reach the Geex server at ${url}`);
    expect(item.backgroundColor).toBeDefined();
  });

  it("says offline when something other than geex serve answers /health", async () => {
    server.routes.set("GET /health", () => ({ json: { status: "ok" } }));
    const { item } = await startStatus();
    expect(item.text).toBe("$(warning) Geex: offline");
    expect(item.tooltip).toContain("/health answered without a model and engine: not geex serve?");
  });

  it("says the key was refused on a 401, naming the setting", async () => {
    server.health();
    server.apiKey = "secret";
    const status = await startStatus();
    expect(status.item.text).toBe("$(warning) Geex: API key refused");
    expect(status.item.tooltip).toMatch(/401.*geex\.apiKey/);
    setConfiguration({ "geex.apiKey": "secret" });
    await status.refresh();
    expect(status.item.text).toBe("$(check) Geex tiny-geex");
  });

  it("says the key was refused when requests get a 401 while /health answers without one", async () => {
    server.health();
    const { item } = await startStatus();
    const refused = new GeexError("the Geex server answered 401: invalid API key", 401);
    log.failed("completing", refused);
    expect(item.text).toBe("$(warning) Geex: API key refused");
    expect(item.tooltip).toContain("invalid API key");
  });

  it("shows the last completion failure until completion works again", async () => {
    server.health();
    const { item } = await startStatus();
    log.failed("completing", new Error("the Geex server answered 400: no FIM here"));
    expect(item.text).toBe("$(warning) Geex tiny-geex");
    expect(item.tooltip).toMatch(/Last failure \(completing, .*\): .*no FIM here/);
    log.succeeded("completing");
    expect(item.text).toBe("$(check) Geex tiny-geex");
  });

  it("asks the server's health every poll interval, after a settings change, not once disposed", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    server.health();
    const { item } = registerStatusItem();
    await expect.poll(() => item.text).toBe("$(check) Geex tiny-geex");
    expect(healthRequests()).toBe(1);
    await vi.advanceTimersByTimeAsync(HEALTH_POLL_MS);
    await expect.poll(healthRequests).toBe(2);
    await vi.advanceTimersByTimeAsync(HEALTH_POLL_MS);
    await expect.poll(healthRequests).toBe(3);
    await testState.commands.get("geex.toggleCompletion")?.(); // a settings change
    await expect.poll(healthRequests).toBe(4);
    for (const subscription of context.subscriptions) subscription.dispose();
    await vi.advanceTimersByTimeAsync(HEALTH_POLL_MS * 3);
    expect(vi.getTimerCount()).toBe(0);
    expect(healthRequests()).toBe(4);
  });
});

describe("the Geex menu and the toggle", () => {
  it("toggles completion as you type in the user's settings, and the item says so", async () => {
    server.health();
    const { item } = await startStatus();
    testState.quickPickAnswers.push("$(circle-slash) Turn off completion as you type");
    await testState.commands.get("geex.statusMenu")?.();
    expect(testState.configuration["geex.completion.enabled"]).toBe(false);
    expect(item.text).toBe("$(circle-slash) Geex tiny-geex");
    expect(item.tooltip).toMatch(/Completion as you type: off/);
    await testState.commands.get("geex.toggleCompletion")?.();
    expect(testState.configuration["geex.completion.enabled"]).toBe(true);
  });

  it("offers the settings and the output, and shows the output", async () => {
    server.health();
    await startStatus();
    testState.quickPickAnswers.push("$(output) Show the Geex output");
    await testState.commands.get("geex.statusMenu")?.();
    const labels = (testState.quickPickItems[0] as { label: string }[]).map((i) => i.label);
    expect(labels).toContain("$(gear) Open the Geex settings");
    expect(testState.outputChannels[0]?.name).toBe("Geex");
    expect(testState.outputChannels[0]?.shown).toBe(true);
  });
});

describe("activation", () => {
  it("registers completion for every file, the status item, the menu and the toggle", async () => {
    server.health();
    activate(context as unknown as vscode.ExtensionContext);
    expect(testState.inlineProviders.map((p) => p.selector)).toEqual([{ pattern: "**" }]);
    expect([...testState.commands.keys()]).toEqual(
      expect.arrayContaining(["geex.statusMenu", "geex.toggleCompletion"]),
    );
    const [item] = testState.statusBarItems;
    await expect.poll(() => item?.text).toBe("$(check) Geex tiny-geex");
    for (const subscription of context.subscriptions) subscription.dispose();
    expect(testState.inlineProviders).toEqual([]);
    expect(testState.commands.has("geex.statusMenu")).toBe(false);
    expect(item?.visible).toBe(false);
  });
});

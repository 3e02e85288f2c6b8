/**
 * The status bar item: whether the server answers (its `/health`, asked every few seconds and
 * after a settings change), which model it serves, what the extension is asking it now, and
 * the last failure of completion as you type, which is shown here rather than popped up.
 * Its click opens the Geex menu (`geex.statusMenu`).
 */
import * as vscode from "vscode";
import { GeexError, type Health } from "./client";
import type { Failure, GeexLog } from "./log";
import type { Services } from "./services";

/** How often the server's health is asked. */
export const HEALTH_POLL_MS = 10_000;

type ServerState =
  | { kind: "checking" }
  | { kind: "online"; health: Health }
  | { kind: "offline"; message: string; httpStatus: number | undefined };

export function registerStatus(
  context: vscode.ExtensionContext,
  services: Services,
  log: GeexLog,
): GeexStatus {
  const status = new GeexStatus(services, log);
  context.subscriptions.push(
    status,
    vscode.commands.registerCommand("geex.statusMenu", () => showStatusMenu(services, log, status)),
    vscode.commands.registerCommand("geex.toggleCompletion", () => toggleCompletion(services)),
  );
  return status;
}

export class GeexStatus implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private state: ServerState = { kind: "checking" };
  private checking: AbortController | undefined;
  private readonly subscriptions: vscode.Disposable[];
  private readonly poll: ReturnType<typeof setInterval>;

  constructor(
    private readonly services: Services,
    private readonly log: GeexLog,
  ) {
    this.item.command = "geex.statusMenu";
    this.subscriptions = [
      services.activity.onDidChange(() => {
        this.render();
      }),
      log.onDidChange(() => {
        this.render();
      }),
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (!event.affectsConfiguration("geex")) return;
        this.render();
        void this.refresh();
      }),
    ];
    this.poll = setInterval(() => void this.refresh(), HEALTH_POLL_MS);
    this.render();
    this.item.show();
    void this.refresh();
  }

  /** Asks the server's health now; a newer check replaces one still waiting. */
  async refresh(): Promise<void> {
    this.checking?.abort();
    const controller = new AbortController();
    this.checking = controller;
    try {
      const health = await this.services.client.health(controller.signal);
      if (typeof health.model !== "string" || typeof health.engine !== "object") {
        const url = this.services.settings().serverUrl;
        throw new GeexError(`${url}/health answered without a model and engine: not geex serve?`);
      }
      this.state = { kind: "online", health };
    } catch (error) {
      if (controller.signal.aborted) return;
      this.state = {
        kind: "offline",
        message: error instanceof Error ? error.message : String(error),
        httpStatus: error instanceof GeexError ? error.status : undefined,
      };
    } finally {
      if (this.checking === controller) this.checking = undefined;
    }
    this.render();
  }

  private render(): void {
    const settings = this.services.settings();
    const running = this.services.activity.labels;
    const failure = this.log.lastFailure;
    this.item.text =
      running.length > 0
        ? `$(sync~spin) Geex: ${running.join(", ")}`
        : idleText(this.state, settings.completionEnabled, failure);
    const lines = [`Geex server ${settings.serverUrl}`];
    if (this.state.kind === "online") {
      const { engine, model } = this.state.health;
      lines.push(`Online, serving ${model}`);
      lines.push(`Engine: ${engine.running} running, ${engine.queued} queued`);
    } else {
      lines.push(this.state.kind === "offline" ? this.state.message : "Checking the server…");
    }
    lines.push(`Completion as you type: ${settings.completionEnabled ? "on" : "off"}`);
    if (failure) {
      const at = failure.at.toLocaleTimeString();
      lines.push(`Last failure (${failure.what}, ${at}): ${failure.message}`);
    }
    lines.push("Click for the Geex menu.");
    this.item.tooltip = lines.join("\n");
    this.item.backgroundColor =
      this.state.kind === "offline"
        ? new vscode.ThemeColor("statusBarItem.warningBackground")
        : undefined;
  }

  dispose(): void {
    clearInterval(this.poll);
    this.checking?.abort();
    for (const subscription of this.subscriptions) subscription.dispose();
    this.item.dispose();
  }
}

/** The item's text when nothing is running. */
function idleText(state: ServerState, completionEnabled: boolean, failure: Failure | undefined) {
  // geex serve's /health needs no key, so a refused key shows in the requests that need one.
  const keyRefused =
    state.kind === "offline" ? state.httpStatus === 401 : failure?.httpStatus === 401;
  if (keyRefused) return "$(warning) Geex: API key refused";
  if (state.kind === "offline") return "$(warning) Geex: offline";
  if (state.kind === "checking") return "$(circle-large-outline) Geex";
  const mark = failure ? "$(warning)" : completionEnabled ? "$(check)" : "$(circle-slash)";
  return `${mark} Geex ${state.health.model}`;
}

interface MenuAction extends vscode.QuickPickItem {
  run(): unknown;
}

async function showStatusMenu(services: Services, log: GeexLog, status: GeexStatus): Promise<void> {
  const enabled = services.settings().completionEnabled;
  const actions: MenuAction[] = [
    {
      label: enabled
        ? "$(circle-slash) Turn off completion as you type"
        : "$(check) Turn on completion as you type",
      run: () => vscode.commands.executeCommand("geex.toggleCompletion"),
    },
    { label: "$(refresh) Check the server again", run: () => status.refresh() },
    {
      label: "$(gear) Open the Geex settings",
      run: () => vscode.commands.executeCommand("workbench.action.openSettings", "geex"),
    },
    {
      label: "$(output) Show the Geex output",
      run: () => {
        log.show();
      },
    },
  ];
  const picked = await vscode.window.showQuickPick(actions, { title: "Geex" });
  await picked?.run();
}

/** Turns completion as you type on or off for every workspace (the user's settings). */
async function toggleCompletion(services: Services): Promise<void> {
  await vscode.workspace
    .getConfiguration("geex")
    .update(
      "completion.enabled",
      !services.settings().completionEnabled,
      vscode.ConfigurationTarget.Global,
    );
}

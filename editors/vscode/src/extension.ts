/**
 * The Geex extension: completion as you type (fill in the middle), candidates on demand,
 * translation, explanation, comments and Ask, from a `geex serve` the settings name.
 */
import type * as vscode from "vscode";
import { Activity } from "./activity";
import { registerAsk } from "./ask";
import { registerCandidates } from "./candidates";
import { GeexClient } from "./client";
import { registerSelectionCommands } from "./commands";
import { readSettings } from "./config";
import { registerInlineCompletion } from "./inline";
import { GeexLog } from "./log";
import type { Services } from "./services";
import { registerStatus } from "./status";

export function activate(context: vscode.ExtensionContext): Services {
  const activity = new Activity();
  const services: Services = {
    client: new GeexClient(() => readSettings()),
    settings: readSettings,
    activity,
  };
  context.subscriptions.push(
    registerCandidates(context, services),
    registerSelectionCommands(services),
    registerAsk(context, services),
  );
  context.subscriptions.push(activity);
  const log = new GeexLog();
  context.subscriptions.push(log);
  registerStatus(context, services, log);
  registerInlineCompletion(context, services, log);
  return services;
}

export function deactivate(): void {
  // Everything the extension holds is in context.subscriptions, which VS Code disposes.
}

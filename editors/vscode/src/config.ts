/**
 * The extension's settings (`geex.*` in package.json), read fresh on each use so that a change
 * in the Settings UI applies to the next request without a reload.
 */
import * as vscode from "vscode";

export type NaturalLanguage = "en" | "zh";

export interface GeexSettings {
  serverUrl: string;
  apiKey: string;
  model: string;
  completionEnabled: boolean;
  debounceMs: number;
  completionMaxTokens: number;
  /** VS Code language id -> completion as you type; "*" covers the others. */
  completionLanguages: Record<string, boolean>;
  candidateCount: number;
  candidateTemperature: number;
  taskMaxTokens: number;
  naturalLanguage: NaturalLanguage;
}

export const DEFAULT_SERVER_URL = "http://127.0.0.1:8000";

export function readSettings(): GeexSettings {
  const config = vscode.workspace.getConfiguration("geex");
  const get = <T>(key: string, fallback: T): T => config.get<T>(key) ?? fallback;
  // Where the code and the key go is the user's choice: package.json scopes these two to
  // "machine", which VS Code never reads from a workspace, and they are read from the user's
  // (or the remote machine's) settings only, should an older VS Code or a misplaced value
  // offer a workspace's.
  const userOnly = (key: string, fallback: string): string => {
    const levels = config.inspect<string>(key);
    const value = levels?.globalValue ?? levels?.defaultValue;
    return typeof value === "string" ? value : fallback;
  };
  return {
    serverUrl:
      userOnly("serverUrl", DEFAULT_SERVER_URL).trim().replace(/\/+$/, "") || DEFAULT_SERVER_URL,
    apiKey: userOnly("apiKey", "").trim(),
    model: get("model", "").trim(),
    completionEnabled: get("completion.enabled", true),
    debounceMs: clamp(get("completion.debounceMs", 250), 0, 5000),
    completionMaxTokens: clamp(get("completion.maxTokens", 64), 1, 4096),
    completionLanguages: get<Record<string, boolean>>("completion.languages", { "*": true }),
    candidateCount: clamp(get("candidates.count", 3), 1, 10),
    candidateTemperature: clamp(get("candidates.temperature", 0.8), 0, 2),
    taskMaxTokens: clamp(get("tasks.maxTokens", 512), 1, 8192),
    naturalLanguage: get<string>("naturalLanguage", "en") === "zh" ? "zh" : "en",
  };
}

/** Whether completion as you type is on for a document of this VS Code language id. */
export function completionEnabledFor(settings: GeexSettings, languageId: string): boolean {
  if (!settings.completionEnabled) return false;
  return settings.completionLanguages[languageId] ?? settings.completionLanguages["*"] ?? true;
}

function clamp(value: number, low: number, high: number): number {
  return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : low;
}

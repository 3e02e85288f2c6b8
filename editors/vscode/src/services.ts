/** What every feature of the extension is built on: one client, the settings, the activity. */
import type { Activity } from "./activity";
import type { GeexClient } from "./client";
import type { GeexSettings } from "./config";

export interface Services {
  client: GeexClient;
  /** The settings as they are now (read on each call). */
  settings: () => GeexSettings;
  activity: Activity;
}

/** The app's one configuration value, the API base, read at boot from /config.json on the app's
 * own origin (the `web` process writes it from the environment; `vite dev` serves public/). */

export type Config = { apiUrl: string };

let current: Config | null = null;

export async function loadConfig(): Promise<Config> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`could not read /config.json (HTTP ${response.status})`);
  const raw = (await response.json()) as Partial<Config>;
  if (typeof raw.apiUrl !== "string" || raw.apiUrl === "") {
    throw new Error('/config.json must be {"apiUrl": "http://host:port"}');
  }
  current = { apiUrl: raw.apiUrl.replace(/\/+$/, "") };
  return current;
}

export function config(): Config {
  if (current === null) throw new Error("config read before loadConfig()");
  return current;
}

/** ws(s)://host/path for the API's origin. */
export function socketUrl(path: string): string {
  const url = new URL(path, config().apiUrl + "/");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

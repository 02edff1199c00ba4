/** Folder names. The API creates, renames and deletes folders and files sessions into them, but
 * has no route that lists them (no ListFolders RPC): a session names only its `folderId`. So the
 * names this browser gave are remembered here (per user), and a folder met only through a session's
 * `folderId` is shown by a short form of its id until it is renamed here. */

const key = (userId: string) => `stockfolio.chatFolders.${userId}`;

export type Folder = { id: string; name: string };

export function knownFolders(userId: string): Record<string, string> {
  try {
    const raw = JSON.parse(localStorage.getItem(key(userId)) ?? "{}") as unknown;
    return raw && typeof raw === "object" ? (raw as Record<string, string>) : {};
  } catch {
    return {};
  }
}

export function rememberFolder(userId: string, id: string, name: string | null): void {
  const all = knownFolders(userId);
  if (name === null) delete all[id];
  else all[id] = name;
  try {
    localStorage.setItem(key(userId), JSON.stringify(all));
  } catch {
    // storage disabled: names last as long as the page
  }
}

/** Every folder this browser knows of or a session names, by name. */
export function foldersOf(sessionFolderIds: string[], names: Record<string, string>): Folder[] {
  const ids = new Set([...Object.keys(names), ...sessionFolderIds.filter(Boolean)]);
  return [...ids]
    .map((id) => ({ id, name: names[id] ?? `Folder ${id.slice(0, 6)}` }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

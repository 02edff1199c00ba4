/** The caller's folders, every page of GET /api/v1/assistant/folders, by name. */

import { api, envelope, type Schemas } from "../../api/client";

export type Folder = Schemas["stockfolio.assistant.v1.Folder"];

export async function loadFolders(): Promise<Folder[]> {
  const folders: Folder[] = [];
  for (let page = 1; ; page += 1) {
    const answer = await envelope(api().GET("/api/v1/assistant/folders", { params: { query: { page, limit: 100 } } }));
    folders.push(...answer.data);
    if (page >= (answer.pagination?.totalPages ?? 1)) break;
  }
  return folders.sort((a, b) => (a.name ?? "").localeCompare(b.name ?? ""));
}

/** A project's file changes as they happen, whoever makes them (a terminal, git, another tab):
 * GET /api/v1/files:watch read as newline-delimited JSON through the generated client. The stream
 * is opened again a few seconds after it ends, for as long as the page wants it. */

import { useEffect, useRef } from "preact/hooks";
import { api, type Schemas } from "../../api/client";

export type Change = Schemas["stockfolio.workspace.v1.WatchFilesResponse"];

const AGAIN_AFTER_MS = 5_000;
/** Changes arriving within this window are handed over together. */
const GATHER_MS = 300;

async function follow(project: string, signal: AbortSignal, onChanges: (changes: Change[]) => void): Promise<void> {
  const { response } = await api().GET("/api/v1/files:watch", {
    params: { query: { project } },
    headers: { Accept: "application/x-ndjson" },
    parseAs: "stream",
    signal,
  });
  const reader = response.body?.pipeThrough(new TextDecoderStream()).getReader();
  if (!reader) return;
  let buffered = "";
  let gathered: Change[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        const record = JSON.parse(line) as Change & { error?: string };
        if (record.error) return; // the stream's last word (a session that ended, ...)
        gathered.push(record);
      }
      if (gathered.length > 0 && timer === undefined) {
        timer = setTimeout(() => {
          const batch = gathered;
          gathered = [];
          timer = undefined;
          onChanges(batch);
        }, GATHER_MS);
      }
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

/** Calls `onChanges` with each batch of changes to `project`'s files while mounted. */
export function useFileWatch(project: string, onChanges: (changes: Change[]) => void): void {
  const latest = useRef(onChanges);
  latest.current = onChanges;

  useEffect(() => {
    if (!project) return;
    const stop = new AbortController();
    let again: ReturnType<typeof setTimeout> | undefined;
    const run = () => {
      follow(project, stop.signal, (changes) => latest.current(changes))
        .catch(() => undefined) // a refused or cut stream: try again shortly
        .finally(() => {
          if (!stop.signal.aborted) again = setTimeout(run, AGAIN_AFTER_MS);
        });
    };
    run();
    return () => {
      stop.abort();
      clearTimeout(again);
    };
  }, [project]);
}

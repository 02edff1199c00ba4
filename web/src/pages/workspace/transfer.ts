/** Uploads and downloads with progress.
 *
 * Downloads go through the generated client (`parseAs: "stream"`) and count the bytes as they are
 * read. Uploads cannot: fetch reports no upload progress (a streamed request body needs HTTP/2
 * and half-duplex, which the facade's HTTP/1.1 does not offer), and openapi-fetch is built on
 * fetch. So this one route goes through XMLHttpRequest, whose `upload.onprogress` does report it;
 * its path, query and answer are still the generated schema's types, so a renamed route or field
 * breaks tsc here as it does everywhere else. The token and its one renewal follow the client's
 * rules (api/client.ts). */

import { api, renewAccessToken } from "../../api/client";
import { ApiError, errorFromResponse } from "../../api/errors";
import type { paths } from "../../api/schema";
import { accessToken } from "../../auth/tokens";
import { config } from "../../config";

const UPLOAD = "/api/v1/files:upload" satisfies keyof paths;
type UploadRoute = paths[typeof UPLOAD]["post"];
export type UploadQuery = NonNullable<UploadRoute["parameters"]["query"]>;
export type UploadAnswer = UploadRoute["responses"][200]["content"]["application/json"];

/** Bytes done of a total (the total is null when nobody said it). */
export type Progress = { loaded: number; total: number | null };

function uploadUrl(query: UploadQuery): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  return `${config().apiUrl}${UPLOAD}?${search.toString()}`;
}

function sendOnce(
  query: UploadQuery,
  file: Blob,
  token: string | null,
  onProgress: (progress: Progress) => void,
  signal?: AbortSignal,
): Promise<{ status: number; statusText: string; body: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", uploadUrl(query));
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.upload.onprogress = (event) =>
      onProgress({ loaded: event.loaded, total: event.lengthComputable ? event.total : null });
    xhr.onload = () => resolve({ status: xhr.status, statusText: xhr.statusText, body: xhr.responseText });
    xhr.onerror = () =>
      reject(new ApiError(0, "NETWORK", `Could not reach the API at ${config().apiUrl}.`));
    xhr.onabort = () => reject(new ApiError(499, "CANCELLED", "The upload was cancelled."));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(file);
  });
}

/** POST /api/v1/files:upload: the file's bytes as the body; resolves to the success envelope. */
export async function uploadFile(
  query: UploadQuery,
  file: Blob,
  onProgress: (progress: Progress) => void,
  signal?: AbortSignal,
): Promise<UploadAnswer> {
  let answer = await sendOnce(query, file, accessToken() ?? (await renewAccessToken()), onProgress, signal);
  let error = answer.status >= 200 && answer.status < 300 ? null : await asError(answer);
  if (error?.status === 401 && error.code === "TOKEN_EXPIRED") {
    answer = await sendOnce(query, file, await renewAccessToken(), onProgress, signal);
    error = answer.status >= 200 && answer.status < 300 ? null : await asError(answer);
  }
  if (error) throw error;
  return JSON.parse(answer.body) as UploadAnswer;
}

function asError(answer: { status: number; statusText: string; body: string }): Promise<ApiError> {
  return errorFromResponse(
    new Response(answer.body, { status: answer.status, statusText: answer.statusText }),
  );
}

/** GET /api/v1/files:download, read chunk by chunk (so progress shows), saved by the browser. */
export async function downloadFile(
  project: string,
  path: string,
  expectedSize: number | null,
  onProgress: (progress: Progress) => void,
): Promise<void> {
  const { response } = await api().GET("/api/v1/files:download", {
    params: { query: { project, path } },
    parseAs: "stream",
  });
  const length = Number(response.headers.get("Content-Length"));
  const total = length > 0 ? length : expectedSize;
  const reader = response.body?.getReader();
  if (!reader) throw new ApiError(response.status, "EMPTY", "The API sent no file.");
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  onProgress({ loaded, total });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress({ loaded, total });
  }
  const type = response.headers.get("Content-Type") ?? "application/octet-stream";
  const url = URL.createObjectURL(new Blob(chunks as BlobPart[], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = path.split("/").pop() || "download";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** "1.2 MB" for a byte count. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

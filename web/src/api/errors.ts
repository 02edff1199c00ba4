/** The facade's error envelope as an exception: the UI shows `message`, code decides behaviour. */

export type FieldViolation = { field: string; description: string };
export type ErrorDetails = {
  fields?: FieldViolation[];
  retryAfter?: number;
  [key: string]: unknown;
};

export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: ErrorDetails;

  constructor(status: number, code: string, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The description the API gave for one field (`quantity`, `row 3: price`), if any. */
  field(name: string): string | undefined {
    return this.details.fields?.find((f) => f.field === name)?.description;
  }
}

/** Reads an error envelope (or anything else a failing server sends) into an ApiError. */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown; details?: unknown };
    if (typeof body.error === "string") {
      const message = typeof body.message === "string" && body.message ? body.message : body.error;
      const details = body.details && typeof body.details === "object" ? body.details : {};
      return new ApiError(response.status, body.error, message, details as ErrorDetails);
    }
  } catch {
    // not JSON: a proxy's page, say; fall through to the status line
  }
  const reason = response.statusText || "request failed";
  return new ApiError(response.status, `HTTP_${response.status}`, `${reason} (HTTP ${response.status})`);
}

/** Any thrown value as a sentence for the screen (never "[object Object]"). */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  return "something went wrong";
}

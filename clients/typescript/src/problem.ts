// Errors as the server states them: every Stowage error is an RFC 9457 problem+json body with a
// stable `type`. StowageProblem carries that body as an Error, so callers branch on `type` (or
// `code`), show `detail` and quote `request_id`, whichever call failed.
import type { components } from "./schema.js";

/** The problem+json body exactly as the OpenAPI document describes it. */
export type ProblemBody = components["schemas"]["Problem"];

export const PROBLEM_TYPE_PREFIX = "urn:stowage:problem:";

/** Every problem code the server documents (docs/api.md, "Errors"). */
export const PROBLEM_CODES = [
  "invalid-input",
  "unauthenticated",
  "permission-denied",
  "not-found",
  "method-not-allowed",
  "request-timeout",
  "conflict",
  "precondition-failed",
  "payload-too-large",
  "unsupported-media-type",
  "range-not-satisfiable",
  "rate-limited",
  "internal-error",
  "blob-corrupt",
  "blob-not-found",
  "service-unavailable",
  "quota-exceeded",
  "insufficient-storage",
] as const;
export type ProblemCode = (typeof PROBLEM_CODES)[number];
export type ProblemType = `${typeof PROBLEM_TYPE_PREFIX}${ProblemCode}`;

/** `PROBLEM_TYPES["quota-exceeded"]` is `"urn:stowage:problem:quota-exceeded"`: for `switch (problem.type)`. */
export const PROBLEM_TYPES = Object.freeze(
  Object.fromEntries(PROBLEM_CODES.map((code) => [code, `${PROBLEM_TYPE_PREFIX}${code}`])),
) as { readonly [C in ProblemCode]: `${typeof PROBLEM_TYPE_PREFIX}${C}` };

type ExtraMembers = Omit<ProblemBody, "type" | "title" | "status" | "detail" | "request_id" | "instance">;

// The extension members (errors, retry_after, conflicting_id, quota…) are copied onto the instance
// as they arrived; this declaration types them without repeating the generated schema.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface StowageProblem extends Readonly<ExtraMembers> {}

/** An error answer of the server (or, with `type` "about:blank", an HTTP error that was not problem+json). */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class StowageProblem extends Error {
  override readonly name = "StowageProblem";
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  /** Quote it when reporting a problem; from the body or, failing that, the X-Request-ID header. */
  readonly request_id: string | null;
  readonly instance: string | null;
  /** The whole body, unknown members included. */
  readonly body: Readonly<ProblemBody> & Readonly<Record<string, unknown>>;

  constructor(body: ProblemBody & Record<string, unknown>) {
    super(`${body.status} ${body.type}: ${body.detail}`);
    Object.assign(this, body);
    this.type = body.type;
    this.title = body.title;
    this.status = body.status;
    this.detail = body.detail;
    this.request_id = body.request_id ?? null;
    this.instance = body.instance ?? null;
    this.body = body;
  }

  /** The part after `urn:stowage:problem:` (`"not-found"`), or the whole type for foreign problems. */
  get code(): string {
    return this.type.startsWith(PROBLEM_TYPE_PREFIX) ? this.type.slice(PROBLEM_TYPE_PREFIX.length) : this.type;
  }

  /** The problem a non-2xx response states; reads its body. */
  static async fromResponse(response: Response): Promise<StowageProblem> {
    const text = await response.text().catch(() => "");
    return StowageProblem.fromText(response.status, text, response.headers);
  }

  /**
   * The problem in an answer this client did not receive itself: Expo's `uploadAsync` result
   * (`{ status, body, headers }`), an XMLHttpRequest…
   */
  static fromText(status: number, text: string, headers: Headers | Record<string, string> = {}): StowageProblem {
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: described from the status.
    }
    return StowageProblem.from(parsed, { status, statusText: "", headers: new Headers(headers) });
  }

  /**
   * The problem for an already-read error body (openapi-fetch's `error`): the server's problem when
   * the body is one, otherwise an "about:blank" problem built from the status line, as RFC 9457 says.
   */
  static from(body: unknown, response: Pick<Response, "status" | "statusText" | "headers">): StowageProblem {
    const requestId = response.headers.get("x-request-id");
    if (isProblemBody(body)) {
      return new StowageProblem({ ...body, request_id: body.request_id ?? requestId });
    }
    const detail = typeof body === "string" && body.trim() ? body.trim().slice(0, 500) : `HTTP ${response.status}`;
    return new StowageProblem({
      type: "about:blank",
      title: response.statusText || `HTTP ${response.status}`,
      status: response.status,
      detail,
      request_id: requestId,
      instance: null,
    });
  }
}

function isProblemBody(body: unknown): body is ProblemBody & Record<string, unknown> {
  if (typeof body !== "object" || body === null) return false;
  const candidate = body as Record<string, unknown>;
  return (
    typeof candidate["type"] === "string" &&
    typeof candidate["status"] === "number" &&
    typeof candidate["title"] === "string" &&
    typeof candidate["detail"] === "string"
  );
}

/** Whether `error` is a StowageProblem, optionally of one code: `isProblem(e, "conflict")`. */
export function isProblem(error: unknown, code?: ProblemCode): error is StowageProblem {
  return error instanceof StowageProblem && (code === undefined || error.type === PROBLEM_TYPES[code]);
}

/** The result shape of every openapi-fetch call. */
export interface ApiResult {
  readonly response: Response;
  readonly data?: unknown;
  readonly error?: unknown;
}

/**
 * The data of a successful openapi-fetch call, or a thrown StowageProblem:
 * `const me = unwrap(await client.api.GET("/api/v1/me"))`.
 */
export function unwrap<R extends ApiResult>(result: R): R extends { data: infer D } ? D : never {
  if (!result.response.ok) throw StowageProblem.from(result.error, result.response);
  return result.data as R extends { data: infer D } ? D : never;
}

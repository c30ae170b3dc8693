// Downloads that resume: the sink says how many bytes it already holds and the ETag they came from;
// the request asks for the rest with `Range` and `If-Range: <that ETag>`. If the file changed in
// between, the server ignores the range and sends the whole new file (200), and the sink is told to
// start over, so old and new bytes are never spliced together.
import { StowageProblem } from "./problem.js";
import { authorized, type ClientContext, encodePath, type ProgressListener } from "./transport.js";

/** Where downloaded bytes go: a file (see `@stowage/client/node`), memory, an Expo file handle… */
export interface DownloadSink {
  /** How many bytes of the file this sink already holds from an earlier attempt (0: none). */
  bytesAlreadyHave(): number | Promise<number>;
  /** The ETag those bytes came from (as given to `begin`), or null: without it nothing is resumed. */
  etag(): string | null | Promise<string | null>;
  /**
   * Called once the answer's headers arrived, before any `write`. `offset` 0: drop anything held
   * (a new download, or the file changed) and keep `etag` with the bytes to come; otherwise the
   * writes continue at `offset`.
   */
  begin(start: { offset: number; etag: string | null; size: number | null }): void | Promise<void>;
  write(chunk: Uint8Array): void | Promise<void>;
  /** Called when the download ends, completed or not (close a file handle here). */
  close?(): void | Promise<void>;
}

export type DownloadTarget = { readonly fileId: string; readonly versionId?: string } | { readonly path: string };

export interface DownloadOptions {
  readonly onProgress?: ProgressListener;
  readonly signal?: AbortSignal;
}

export interface DownloadOutcome {
  /** Where this attempt started: the bytes the sink held and kept (0 for a fresh or restarted download). */
  readonly resumedFrom: number;
  /** Held bytes were dropped because the file had changed (or their ETag was unknown). */
  readonly restarted: boolean;
  /** Bytes written by this attempt. */
  readonly written: number;
  readonly size: number;
  readonly etag: string | null;
}

export async function download(
  context: ClientContext,
  target: DownloadTarget,
  sink: DownloadSink,
  options: DownloadOptions = {},
): Promise<DownloadOutcome> {
  const url = `${context.baseUrl}${downloadPath(target)}`;
  const held = await sink.bytesAlreadyHave();
  const heldEtag = held > 0 ? await sink.etag() : null;
  const get = (headers: Headers): Promise<Response> => {
    const init: RequestInit = { headers };
    if (options.signal) init.signal = options.signal;
    return authorized(context, headers, (sent) => context.transport(url, { ...init, headers: sent }), {});
  };

  const headers = new Headers();
  if (held > 0 && heldEtag !== null) {
    headers.set("Range", `bytes=${held}-`);
    headers.set("If-Range", heldEtag);
  }
  let response = await get(headers);
  if (response.status === 416 && headers.has("Range")) {
    const size = unsatisfiedSize(response.headers.get("Content-Range"));
    await response.body?.cancel();
    // The range starts at the end of the very file the sink holds: it is complete already.
    if (size === held) return { resumedFrom: held, restarted: false, written: 0, size, etag: heldEtag };
    // The sink holds more than the file has: it cannot be resumed, so fetch all of it.
    response = await get(new Headers());
  }

  let offset: number;
  let size: number | null;
  const etag = response.headers.get("ETag");
  if (response.status === 206) {
    const range = contentRange(response.headers.get("Content-Range"));
    if (range === null || range.start !== held || (etag !== null && etag !== heldEtag)) {
      await response.body?.cancel();
      throw new Error(
        `unexpected 206 for bytes=${held}-: Content-Range ${response.headers.get("Content-Range")}, ETag ${etag}`,
      );
    }
    offset = held;
    size = range.size;
  } else if (response.status === 200) {
    offset = 0;
    const length = response.headers.get("Content-Length");
    size = length === null ? null : Number(length);
  } else {
    throw await StowageProblem.fromResponse(response);
  }

  let written = 0;
  try {
    await sink.begin({ offset, etag, size });
    const report = (): void => options.onProgress?.({ loaded: offset + written, total: size });
    if (response.body) {
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await sink.write(value);
        written += value.byteLength;
        report();
      }
    } else {
      // React Native's fetch has no streamed bodies: the answer arrives whole (see docs/clients.md
      // for Expo's native downloader, which writes straight to a file).
      const bytes = new Uint8Array(await response.arrayBuffer());
      await sink.write(bytes);
      written = bytes.byteLength;
      report();
    }
  } finally {
    await sink.close?.();
  }
  if (size !== null && offset + written !== size) {
    throw new Error(`download ended after ${offset + written} of ${size} bytes; call download again to resume`);
  }
  return { resumedFrom: offset, restarted: held > 0 && offset === 0, written, size: offset + written, etag };
}

/** Bytes kept in memory (tests, small files on the web); `initial` and `etag` stand for an earlier attempt. */
export class MemorySink implements DownloadSink {
  private chunks: Uint8Array[];
  private held: number;
  private tag: string | null;

  constructor(initial?: { bytes: Uint8Array; etag: string | null }) {
    this.chunks = initial ? [initial.bytes] : [];
    this.held = initial?.bytes.byteLength ?? 0;
    this.tag = initial?.etag ?? null;
  }

  bytesAlreadyHave(): number {
    return this.held;
  }

  etag(): string | null {
    return this.tag;
  }

  begin(start: { offset: number; etag: string | null }): void {
    if (start.offset === 0) {
      this.chunks = [];
      this.held = 0;
    }
    this.tag = start.etag;
  }

  write(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.held += chunk.byteLength;
  }

  /** Everything held, as one array. */
  bytes(): Uint8Array {
    const all = new Uint8Array(this.held);
    let at = 0;
    for (const chunk of this.chunks) {
      all.set(chunk, at);
      at += chunk.byteLength;
    }
    return all;
  }
}

function downloadPath(target: DownloadTarget): string {
  if ("path" in target) return `/api/v1/content/${encodePath(target.path)}`;
  const file = `/api/v1/nodes/${encodeURIComponent(target.fileId)}`;
  return target.versionId === undefined
    ? `${file}/content`
    : `${file}/versions/${encodeURIComponent(target.versionId)}/content`;
}

function contentRange(value: string | null): { start: number; end: number; size: number | null } | null {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value ?? "");
  if (!match) return null;
  return { start: Number(match[1]), end: Number(match[2]), size: match[3] === "*" ? null : Number(match[3]) };
}

function unsatisfiedSize(value: string | null): number | null {
  const match = /^bytes \*\/(\d+)$/.exec(value ?? "");
  return match ? Number(match[1]) : null;
}

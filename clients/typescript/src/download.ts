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
   * Called when the first answer's headers arrived, before any `write`. `offset` 0: drop anything
   * held (a new download, or the file changed) and keep `etag` with the bytes to come; otherwise the
   * writes continue at `offset`. Called again with `offset` 0 if the file changes between chunks.
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
  /**
   * Ask for the file in ranges of this many bytes, one request each. React Native's fetch cannot
   * stream a body, so each answer is held in memory whole: chunks bound that memory (e.g. 4 MiB).
   */
  readonly chunkBytes?: number;
}

export interface DownloadOutcome {
  /** The bytes the sink held before and kept (0 for a fresh or restarted download). */
  readonly resumedFrom: number;
  /** Bytes held or written before were dropped: the file had changed (or their ETag was unknown). */
  readonly restarted: boolean;
  /** Bytes of the file written by this call (`size - resumedFrom`). */
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
  const chunkBytes = options.chunkBytes;
  if (chunkBytes !== undefined && !(Number.isInteger(chunkBytes) && chunkBytes > 0)) {
    throw new RangeError(`chunkBytes must be a positive integer, not ${chunkBytes}`);
  }
  const held = await sink.bytesAlreadyHave();
  const heldEtag = held > 0 ? await sink.etag() : null;
  // Held bytes without their ETag cannot be checked against the file: they are not resumed.
  const resuming = held > 0 && heldEtag !== null;

  /** GET from `start`: the rest, or one chunk; If-Range keeps the bytes before `start` honest. */
  const get = (start: number, etag: string | null): Promise<Response> => {
    const headers = new Headers();
    if (start > 0 || chunkBytes !== undefined) {
      headers.set("Range", chunkBytes === undefined ? `bytes=${start}-` : `bytes=${start}-${start + chunkBytes - 1}`);
      if (etag !== null) headers.set("If-Range", etag);
    }
    const init: RequestInit = options.signal ? { signal: options.signal } : {};
    return authorized(context, headers, (sent) => context.transport(url, { ...init, headers: sent }), {});
  };

  let start = resuming ? held : 0; // where the next request starts
  let etag = resuming ? heldEtag : null; // the ETag of the bytes written so far
  let resumedFrom = start; // bytes of the current content that were there before this call
  let written = 0; // bytes of the current content written by this call
  let size: number | null = null;
  let begun = false;
  let restarted = held > 0 && !resuming;
  const report = (): void => options.onProgress?.({ loaded: resumedFrom + written, total: size });
  try {
    for (;;) {
      const response = await get(start, etag);
      if (response.status === 416) {
        const total = unsatisfiedSize(response.headers.get("Content-Range"));
        await response.body?.cancel();
        if (total === start) {
          // Nothing after `start`: the sink is complete already (or the file is empty).
          size = total;
          if (!begun) await sink.begin({ offset: start, etag, size });
          break;
        }
        if (start === 0) throw new Error(`416 for a range from 0 of a ${total}-byte file`);
        // The sink holds more than the file has: start over.
        start = 0;
        etag = null;
        resumedFrom = 0;
        written = 0;
        restarted = true;
        continue;
      }
      const answerEtag = response.headers.get("ETag");
      if (response.status === 200) {
        // The whole file: a new download, or the file changed (If-Range did not match), so every
        // byte held or written before is dropped and this answer is the content.
        restarted ||= start > 0;
        const length = response.headers.get("Content-Length");
        size = length === null ? null : Number(length);
        etag = answerEtag;
        resumedFrom = 0;
        written = 0;
        await sink.begin({ offset: 0, etag, size });
        begun = true;
        written = await copy(response, sink, (count) => {
          written = count;
          report();
        });
        break;
      }
      if (response.status !== 206) throw await StowageProblem.fromResponse(response);
      const range = contentRange(response.headers.get("Content-Range"));
      if (range === null || range.start !== start || (etag !== null && answerEtag !== null && answerEtag !== etag)) {
        await response.body?.cancel();
        throw new Error(
          `unexpected 206 from byte ${start}: Content-Range ${range?.start}-${range?.end}, ETag ${answerEtag}`,
        );
      }
      etag = answerEtag ?? etag;
      size = range.size;
      if (!begun) await sink.begin({ offset: start, etag, size });
      begun = true;
      const before = written;
      const count = await copy(response, sink, (sofar) => {
        written = before + sofar;
        report();
      });
      written = before + count;
      if (count !== range.end - range.start + 1) break; // cut short: reported below
      start = range.end + 1;
      if (size === null || start >= size) break;
    }
  } finally {
    await sink.close?.();
  }
  if (size !== null && resumedFrom + written !== size) {
    throw new Error(`download ended after ${resumedFrom + written} of ${size} bytes; call download again to resume`);
  }
  return { resumedFrom, restarted, written, size: resumedFrom + written, etag };
}

/** Every byte of the answer into the sink; how many. */
async function copy(response: Response, sink: DownloadSink, progress: (count: number) => void): Promise<number> {
  let count = 0;
  if (!response.body) {
    // React Native's fetch has no streamed bodies: the answer arrives whole (use chunkBytes there).
    const bytes = new Uint8Array(await response.arrayBuffer());
    await sink.write(bytes);
    progress(bytes.byteLength);
    return bytes.byteLength;
  }
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return count;
    await sink.write(value);
    count += value.byteLength;
    progress(count);
  }
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

// Node-only helpers (this module imports node:fs; the main entry point never does): a file as an
// upload body, and a file as a resumable download sink whose ETag is kept in a sidecar file.
import { openAsBlob } from "node:fs";
import { type FileHandle, open, readFile, rm, stat, writeFile } from "node:fs/promises";

import type { DownloadSink } from "./download.js";

/** A file as a Blob read lazily from disk (for `client.upload`): never loaded into memory whole. */
export function fileBody(path: string): Promise<Blob> {
  return openAsBlob(path);
}

export interface FileSink extends DownloadSink {
  /** Where the ETag of the held bytes is kept between runs. */
  readonly etagPath: string;
}

/**
 * Download into `path`, resuming what an earlier run left there: its size is what the sink holds,
 * and `<path>.etag` the ETag those bytes came from.
 */
export function fileSink(path: string, { etagPath = `${path}.etag` }: { etagPath?: string } = {}): FileSink {
  let handle: FileHandle | null = null;
  let position = 0;
  return {
    etagPath,
    async bytesAlreadyHave() {
      try {
        return (await stat(path)).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
        throw error;
      }
    },
    async etag() {
      try {
        return (await readFile(etagPath, "utf8")).trim() || null;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw error;
      }
    },
    async begin({ offset, etag }) {
      // Called again (offset 0) when the file changed between chunks: start a new handle.
      await handle?.close();
      handle = await open(path, offset === 0 ? "w" : "r+");
      // Anything past the offset is not trusted (a write cut short): it is overwritten.
      await handle.truncate(offset);
      position = offset;
      if (etag === null) await rm(etagPath, { force: true });
      else await writeFile(etagPath, etag);
    },
    async write(chunk) {
      if (handle === null) throw new Error("write before begin");
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.byteLength - done, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    },
    async close() {
      await handle?.close();
      handle = null;
    },
  };
}

// An XMLHttpRequest for Node (which has none), so the transport React Native and browsers use runs
// against the real server here: the request goes out over node:http in slices, and upload
// `progress` events report each slice once the socket has taken it, as a browser's do.
import { request as httpRequest } from "node:http";

import type { XhrLike } from "../src/transport.js";

type ProgressHandler = ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null;

const SLICE = 64 * 1024;

export class NodeXhr implements XhrLike {
  /** Every request sent through any instance: method, path and Authorization. */
  static readonly sent: { method: string; path: string; authorization: string | null }[] = [];

  status = 0;
  statusText = "";
  responseText = "";
  readonly upload: { onprogress: ProgressHandler } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  ontimeout: (() => void) | null = null;
  private method = "GET";
  private url = "";
  private readonly headers = new Headers();
  private rawHeaders = "";
  private aborted = false;

  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
  }

  setRequestHeader(name: string, value: string): void {
    this.headers.set(name, value);
  }

  getAllResponseHeaders(): string {
    return this.rawHeaders;
  }

  abort(): void {
    this.aborted = true;
    this.onabort?.();
  }

  send(body?: Blob | ArrayBuffer | ArrayBufferView | FormData | string | null): void {
    void this.run(body ?? null).catch(() => this.onerror?.());
  }

  private async run(body: Blob | ArrayBuffer | ArrayBufferView | FormData | string | null): Promise<void> {
    // Encode the body the way XMLHttpRequest does (FormData picks its boundary and Content-Type).
    const encoded = body === null ? null : new Response(body as BodyInit);
    const bytes = encoded === null ? new Uint8Array(0) : new Uint8Array(await encoded.arrayBuffer());
    const type = encoded?.headers.get("content-type");
    if (type && !this.headers.has("content-type")) this.headers.set("content-type", type);
    const url = new URL(this.url);
    NodeXhr.sent.push({ method: this.method, path: url.pathname, authorization: this.headers.get("authorization") });
    const headers: Record<string, string> = { "content-length": String(bytes.byteLength) };
    this.headers.forEach((value, name) => {
      headers[name] = value;
    });
    await new Promise<void>((resolve, reject) => {
      const outgoing = httpRequest(url, { method: this.method, headers }, (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        incoming.on("error", reject);
        incoming.on("end", () => {
          this.status = incoming.statusCode ?? 0;
          this.statusText = incoming.statusMessage ?? "";
          this.responseText = Buffer.concat(chunks).toString("utf8");
          const raw = incoming.rawHeaders;
          const lines: string[] = [];
          for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]?.toLowerCase()}: ${raw[i + 1]}`);
          this.rawHeaders = lines.join("\r\n");
          resolve();
        });
      });
      outgoing.on("error", reject);
      let loaded = 0;
      const writeNext = (): void => {
        if (this.aborted) {
          outgoing.destroy();
          return;
        }
        if (loaded >= bytes.byteLength) {
          outgoing.end();
          return;
        }
        const slice = bytes.subarray(loaded, loaded + SLICE);
        outgoing.write(slice, () => {
          loaded += slice.byteLength;
          this.upload.onprogress?.({ loaded, total: bytes.byteLength, lengthComputable: true });
          writeNext();
        });
      };
      writeNext();
    });
    if (!this.aborted) this.onload?.();
  }
}

// How requests leave the client. Two ways, because upload progress needs one of them:
// - XMLHttpRequest, in browsers, Expo web and React Native: the only API there that reports upload
//   progress (fetch cannot; a streamed fetch body needs HTTP/2 in Chrome and exists nowhere else);
// - fetch with a counted ReadableStream body, where there is no XMLHttpRequest (Node 20).
// Both hand back a standard Response, so the refresh-once rule and the problem parsing are shared.
import type { FetchFunction, SendOptions, TokenStore } from "./tokens.js";

export interface Progress {
  /** Bytes handed to the network so far. */
  readonly loaded: number;
  /** The body's size, when known. */
  readonly total: number | null;
}

export type ProgressListener = (progress: Progress) => void;

/** The part of XMLHttpRequest this client uses (browsers and React Native provide it). */
export interface XhrLike {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  getAllResponseHeaders(): string;
  send(body?: Blob | ArrayBuffer | ArrayBufferView | FormData | string | null): void;
  abort(): void;
  readonly status: number;
  readonly statusText: string;
  readonly responseText: string;
  readonly upload: {
    onprogress: ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null;
  };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
  ontimeout: (() => void) | null;
}

export type XhrConstructor = new () => XhrLike;

/** What the request helpers need from the client. */
export interface ClientContext {
  readonly baseUrl: string;
  readonly session: TokenStore;
  /** The plain transport (no auth): the global fetch unless one was given. */
  readonly transport: FetchFunction;
  /** XMLHttpRequest when the platform has one (or the one given); undefined in Node. */
  readonly xhr: XhrConstructor | undefined;
}

/** A body XMLHttpRequest can send. */
export type SendBody = Blob | ArrayBuffer | ArrayBufferView | FormData | null;

export interface SendRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ProgressListener | undefined;
}

/** One attempt over XMLHttpRequest, answered as a standard Response. */
export function sendWithXhr(Xhr: XhrConstructor, request: SendRequest, body: SendBody): Promise<Response> {
  return new Promise((resolve, reject) => {
    const xhr = new Xhr();
    const onAbort = (): void => xhr.abort();
    xhr.open(request.method, request.url);
    request.headers.forEach((value, name) => {
      xhr.setRequestHeader(name, value);
    });
    if (request.onProgress) {
      const listener = request.onProgress;
      xhr.upload.onprogress = (event) => {
        listener({ loaded: event.loaded, total: event.lengthComputable ? event.total : null });
      };
    }
    const settle = (): void => request.signal?.removeEventListener("abort", onAbort);
    xhr.onload = () => {
      settle();
      const init = {
        status: xhr.status,
        statusText: xhr.statusText,
        headers: parseHeaders(xhr.getAllResponseHeaders()),
      };
      // A 204/304 Response may not have a body; every other answer's text is its body.
      resolve(new Response(xhr.status === 204 || xhr.status === 304 ? null : xhr.responseText, init));
    };
    xhr.onerror = () => {
      settle();
      reject(new TypeError(`Network request failed: ${request.method} ${request.url}`));
    };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => {
      settle();
      reject(abortError());
    };
    if (request.signal?.aborted) {
      reject(abortError());
      return;
    }
    request.signal?.addEventListener("abort", onAbort);
    xhr.send(body);
  });
}

/** One attempt over fetch; a stream body is sent half-duplex (Node's fetch requires saying so). */
export function sendWithFetch(
  transport: FetchFunction,
  request: SendRequest,
  body: ReadableStream<Uint8Array> | Blob | FormData | null,
): Promise<Response> {
  const init: RequestInit & { duplex?: "half" } = { method: request.method, headers: request.headers, body };
  if (request.signal) init.signal = request.signal;
  if (typeof ReadableStream !== "undefined" && body instanceof ReadableStream) init.duplex = "half";
  return transport(request.url, init);
}

/** A stream over `blob` in slices of `chunkBytes`, reporting each slice as it is taken. */
export function countedBlobStream(
  blob: Blob,
  onProgress: ProgressListener,
  chunkBytes = 64 * 1024,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (offset >= blob.size) {
          controller.close();
          return;
        }
        const end = Math.min(offset + chunkBytes, blob.size);
        const chunk = new Uint8Array(await blob.slice(offset, end).arrayBuffer());
        offset = end;
        controller.enqueue(chunk);
        onProgress({ loaded: offset, total: blob.size });
      },
    },
    // No read-ahead: a slice is read (and counted) only when the network takes the previous one.
    { highWaterMark: 0 },
  );
}

/** `stream`, reporting the bytes taken from it. */
export function countedStream(
  stream: ReadableStream<Uint8Array>,
  onProgress: ProgressListener,
  total: number | null,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let loaded = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          return;
        }
        loaded += value.byteLength;
        controller.enqueue(value);
        onProgress({ loaded, total });
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Run `attempt` with the session (refresh once on 401), over a fresh request each time. */
export function authorized(
  context: ClientContext,
  headers: Headers,
  attempt: (headers: Headers) => Promise<Response>,
  options: SendOptions,
): Promise<Response> {
  const withAuthorization = (authorization: string | null): Promise<Response> => {
    const sent = new Headers(headers);
    if (authorization !== null) sent.set("Authorization", authorization);
    return attempt(sent);
  };
  return context.session.send(withAuthorization, options);
}

export function parseHeaders(raw: string): Headers {
  const headers = new Headers();
  for (const line of raw.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return headers;
}

function abortError(): Error {
  const error = new Error("The request was aborted");
  error.name = "AbortError";
  return error;
}

/** `/api/v1/content/<each segment percent-encoded>`: a path's slashes stay separators. */
export function encodePath(path: string): string {
  return path
    .split("/")
    .filter((segment) => segment !== "")
    .map(encodeURIComponent)
    .join("/");
}

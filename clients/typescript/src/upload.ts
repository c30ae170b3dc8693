// Uploads with progress: a raw body to a path, into a folder or as a new version of a file, and a
// multipart form with several files. The body is re-read for the retry after a refresh (a Blob or
// a buffer can be; a one-shot stream cannot, and is not retried).
import { StowageProblem } from "./problem.js";
import type { components } from "./schema.js";
import {
  authorized,
  type ClientContext,
  countedBlobStream,
  countedStream,
  encodePath,
  type ProgressListener,
  type SendRequest,
  sendWithFetch,
  sendWithXhr,
} from "./transport.js";

export type NodeOut = components["schemas"]["NodeOut"];
export type OnConflict = "fail" | "rename" | "replace";

/** A file on the device by URI (`file://…` from expo-image-picker or expo-document-picker, `blob:…`). */
export interface FileUri {
  readonly uri: string;
  /** The file name sent in a multipart part. */
  readonly name?: string;
  /** The media type sent in a multipart part (the server sniffs the stored type anyway). */
  readonly type?: string;
}

export type UploadBody = Blob | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array> | FileUri;

/** Where a raw upload goes. */
export type UploadTarget =
  | { readonly path: string; readonly createParents?: boolean }
  | { readonly folderId: string; readonly name: string }
  | { readonly fileId: string };

export interface UploadOptions {
  /** PUT (default) or POST: the server treats them alike (Expo's uploadAsync sends POST). */
  readonly method?: "PUT" | "POST";
  readonly onConflict?: OnConflict;
  /** `*` creates only: 412 if the name exists. */
  readonly ifNoneMatch?: "*";
  /** Replace only this version (its ETag): 412 otherwise. */
  readonly ifMatch?: string;
  /** SHA-256 of the body in hex: the server refuses (400) and stores nothing on a mismatch. */
  readonly sha256?: string;
  /** The file's modification time, for sync clients. */
  readonly modifiedAt?: Date | string;
  readonly contentType?: string;
  /** The size of a ReadableStream body (sent as Content-Length; Node only). */
  readonly contentLength?: number;
  readonly onProgress?: ProgressListener;
  readonly signal?: AbortSignal;
  /** Default: XMLHttpRequest where there is one (progress events), fetch otherwise. */
  readonly transport?: "auto" | "xhr" | "fetch";
}

export interface UploadOutcome {
  readonly node: NodeOut;
  /** 201 (a new file) rather than 200 (a new version of an existing one). */
  readonly created: boolean;
  readonly etag: string | null;
  readonly location: string | null;
}

export async function upload(
  context: ClientContext,
  target: UploadTarget,
  body: UploadBody,
  options: UploadOptions = {},
): Promise<UploadOutcome> {
  const headers = new Headers({ "Content-Type": options.contentType ?? "application/octet-stream" });
  if (options.ifNoneMatch) headers.set("If-None-Match", options.ifNoneMatch);
  if (options.ifMatch) headers.set("If-Match", options.ifMatch);
  if (options.sha256) headers.set("X-Content-SHA256", options.sha256);
  if (options.modifiedAt !== undefined) {
    const when = options.modifiedAt;
    headers.set("X-Modified-At", typeof when === "string" ? when : when.toISOString());
  }
  const query = new URLSearchParams();
  if (options.onConflict) query.set("on_conflict", options.onConflict);
  if ("path" in target && target.createParents === false) query.set("create_parents", "false");
  const url = `${context.baseUrl}${uploadPath(target)}${query.size > 0 ? `?${query}` : ""}`;
  const method = options.method ?? "PUT";
  const content = isFileUri(body) ? await resolveUri(context, body.uri) : body;

  const response = await sendBody(context, { method, url, headers, options }, content);
  if (response.status !== 200 && response.status !== 201) throw await StowageProblem.fromResponse(response);
  return {
    node: (await response.json()) as NodeOut,
    created: response.status === 201,
    etag: response.headers.get("ETag"),
    location: response.headers.get("Location"),
  };
}

/** One part of a multipart upload. */
export interface UploadFile {
  readonly name: string;
  readonly body: Blob | FileUri;
  readonly type?: string;
}

export interface MultipartOptions {
  readonly onConflict?: OnConflict;
  readonly onProgress?: ProgressListener;
  readonly signal?: AbortSignal;
  readonly transport?: "auto" | "xhr" | "fetch";
}

/** Every file into one folder with one request (`POST /nodes/{folder}/upload`); the stored nodes in order. */
export async function uploadMultipart(
  context: ClientContext,
  folderId: string,
  files: readonly UploadFile[],
  options: MultipartOptions = {},
): Promise<NodeOut[]> {
  const url = `${context.baseUrl}/api/v1/nodes/${encodeURIComponent(folderId)}/upload`;
  const form = async (): Promise<FormData> => {
    const data = new FormData();
    // Fields apply to the files after them: on_conflict must come first (a later one is a 400).
    if (options.onConflict) data.append("on_conflict", options.onConflict);
    for (const file of files) {
      if (!isFileUri(file.body)) {
        data.append("file", file.body, file.name);
      } else if (isReactNative()) {
        // React Native's FormData sends a {uri, name, type} object as a file part, read natively.
        const part = {
          uri: file.body.uri,
          name: file.name,
          type: file.type ?? file.body.type ?? "application/octet-stream",
        };
        data.append("file", part as unknown as Blob);
      } else {
        data.append("file", await resolveUri(context, file.body.uri), file.name);
      }
    }
    return data;
  };
  // FormData sets its own Content-Type with the boundary; none is given here.
  const response = await sendBody(context, { method: "POST", url, headers: new Headers(), options }, await form());
  if (response.status !== 201) throw await StowageProblem.fromResponse(response);
  return ((await response.json()) as components["schemas"]["UploadResult"]).items;
}

/** A body that can be sent again (a Blob, a buffer, a form) / a stream that can be sent once. */
const BODY = { replayable: true, sendsBody: true } as const;
const ONE_SHOT = { replayable: false, sendsBody: true } as const;

interface Outgoing {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  readonly options: {
    onProgress?: ProgressListener;
    signal?: AbortSignal;
    transport?: "auto" | "xhr" | "fetch";
    contentLength?: number;
  };
}

async function sendBody(
  context: ClientContext,
  outgoing: Outgoing,
  body: Blob | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array> | FormData,
): Promise<Response> {
  const { options } = outgoing;
  const stream = isStream(body);
  const useXhr = options.transport === "xhr" || (options.transport !== "fetch" && context.xhr !== undefined && !stream);
  if (useXhr) {
    const Xhr = context.xhr;
    if (Xhr === undefined) throw new TypeError("transport 'xhr' needs XMLHttpRequest, which this platform lacks");
    if (stream) throw new TypeError("XMLHttpRequest cannot send a ReadableStream: pass a Blob or a buffer");
    return authorized(context, outgoing.headers, (headers) => sendWithXhr(Xhr, request(outgoing, headers), body), BODY);
  }
  const onProgress = options.onProgress;
  if (stream) {
    if (options.contentLength !== undefined) outgoing.headers.set("Content-Length", String(options.contentLength));
    const counted = onProgress ? countedStream(body, onProgress, options.contentLength ?? null) : body;
    // A stream can be sent once: after a 401 the tokens are renewed, the 401 is returned.
    return authorized(
      context,
      outgoing.headers,
      (headers) => sendWithFetch(context.transport, request(outgoing, headers), counted),
      ONE_SHOT,
    );
  }
  if (body instanceof FormData) {
    const attempt = (headers: Headers): Promise<Response> => {
      if (!onProgress) return sendWithFetch(context.transport, request(outgoing, headers), body);
      // The encoded form as a stream (its boundary is in the Content-Type this Request chose).
      const encoded = new Request(outgoing.url, { method: "POST", body });
      headers.set("Content-Type", encoded.headers.get("Content-Type") ?? "multipart/form-data");
      const source = encoded.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
      return sendWithFetch(context.transport, request(outgoing, headers), countedStream(source, onProgress, null));
    };
    return authorized(context, outgoing.headers, attempt, BODY);
  }
  const blob = body instanceof Blob ? body : new Blob([body as ArrayBuffer]);
  const attempt = (headers: Headers): Promise<Response> => {
    if (!onProgress) return sendWithFetch(context.transport, request(outgoing, headers), blob);
    headers.set("Content-Length", String(blob.size));
    // A fresh stream per attempt: the Blob is read again for the retry, never held in memory.
    return sendWithFetch(context.transport, request(outgoing, headers), countedBlobStream(blob, onProgress));
  };
  return authorized(context, outgoing.headers, attempt, BODY);
}

function request(outgoing: Outgoing, headers: Headers): SendRequest {
  const { signal, onProgress } = outgoing.options;
  return { method: outgoing.method, url: outgoing.url, headers, signal, onProgress };
}

function uploadPath(target: UploadTarget): string {
  if ("path" in target) return `/api/v1/content/${encodePath(target.path)}`;
  if ("folderId" in target) {
    return `/api/v1/nodes/${encodeURIComponent(target.folderId)}/children/${encodeURIComponent(target.name)}`;
  }
  return `/api/v1/nodes/${encodeURIComponent(target.fileId)}/content`;
}

/** A device file's bytes as a Blob: in React Native and browsers fetch reads file:// and blob: URIs natively. */
async function resolveUri(context: ClientContext, uri: string): Promise<Blob> {
  const response = await context.transport(uri);
  if (!response.ok && response.status !== 0) throw new TypeError(`cannot read ${uri}: ${response.status}`);
  return response.blob();
}

function isFileUri(body: unknown): body is FileUri {
  return typeof body === "object" && body !== null && typeof (body as { uri?: unknown }).uri === "string";
}

function isStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof ReadableStream !== "undefined" && body instanceof ReadableStream;
}

function isReactNative(): boolean {
  return typeof navigator !== "undefined" && navigator.product === "ReactNative";
}

// @stowage/client: the generated types of the Stowage API (`paths`, `components`), a typed
// openapi-fetch client that carries the session, and the helpers the raw API leaves to every app:
// refresh-once on 401, uploads with progress, resumable downloads, cursor paging and typed problems.
// This entry point uses only web APIs (fetch, Blob, FormData, XMLHttpRequest, ReadableStream), so
// it runs in React Native, Expo web, browsers and Node 20; Node-only helpers are in "./node".
import createFetchClient, { type Client } from "openapi-fetch";

import {
  download,
  type DownloadOptions,
  type DownloadOutcome,
  type DownloadSink,
  type DownloadTarget,
} from "./download.js";
import { paginate } from "./listing.js";
import type { StowageProblem } from "./problem.js";
import type { components, operations, paths } from "./schema.js";
import { type FetchFunction, type TokenPersistence, TokenStore } from "./tokens.js";
import type { ClientContext, XhrConstructor } from "./transport.js";
import {
  type MultipartOptions,
  type NodeOut,
  upload,
  type UploadBody,
  type UploadFile,
  type UploadOptions,
  type UploadOutcome,
  type UploadTarget,
  uploadMultipart,
} from "./upload.js";

export type { components, operations, paths };
export * from "./download.js";
export * from "./listing.js";
export * from "./problem.js";
export * from "./tokens.js";
export type { Progress, ProgressListener, XhrConstructor, XhrLike } from "./transport.js";
export * from "./upload.js";

export type ListChildrenQuery = Omit<NonNullable<operations["listChildren"]["parameters"]["query"]>, "cursor">;

export interface StowageClientOptions {
  /** The server's address, e.g. `https://files.example.com` (no trailing `/api/v1`). */
  readonly baseUrl: string;
  /** Where tokens survive restarts (default: memory only). */
  readonly persistence?: TokenPersistence;
  /** The session ended because the server refused the refresh token: show the login screen. */
  readonly onSignOut?: (reason: StowageProblem) => void;
  /** The HTTP transport (default: the global fetch). */
  readonly fetch?: FetchFunction;
  /** XMLHttpRequest for uploads with progress (default: the global one, if any; null: never). */
  readonly XMLHttpRequest?: XhrConstructor | null;
  /** Refresh ahead of time when the access token expires within this many ms (default 30 s). */
  readonly refreshMarginMs?: number;
}

export interface StowageClient {
  readonly baseUrl: string;
  /** Sign-up, login, logout, the tokens and their refresh. */
  readonly session: TokenStore;
  /** Every operation of the API, typed from the OpenAPI document, sent with the session. */
  readonly api: Client<paths>;
  upload(target: UploadTarget, body: UploadBody, options?: UploadOptions): Promise<UploadOutcome>;
  uploadMultipart(folderId: string, files: readonly UploadFile[], options?: MultipartOptions): Promise<NodeOut[]>;
  download(target: DownloadTarget, sink: DownloadSink, options?: DownloadOptions): Promise<DownloadOutcome>;
  /** Every child of a folder, following the cursor. */
  listChildren(
    folderId: string,
    query?: ListChildrenQuery,
  ): AsyncGenerator<components["schemas"]["NodeOut"], void, undefined>;
}

export function createStowageClient(options: StowageClientOptions): StowageClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const given = options.fetch;
  const transport: FetchFunction = given ?? ((input, init) => fetch(input, init));
  const session = new TokenStore({
    baseUrl,
    fetch: transport,
    ...(options.persistence ? { persistence: options.persistence } : {}),
    ...(options.onSignOut ? { onSignOut: options.onSignOut } : {}),
    ...(options.refreshMarginMs !== undefined ? { refreshMarginMs: options.refreshMarginMs } : {}),
  });
  const platformXhr = (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest as XhrConstructor | undefined;
  const xhr = options.XMLHttpRequest === null ? undefined : (options.XMLHttpRequest ?? platformXhr);
  const context: ClientContext = { baseUrl, session, transport, xhr };
  const api = createFetchClient<paths>({ baseUrl, fetch: session.fetch });

  return {
    baseUrl,
    session,
    api,
    upload: (target, body, uploadOptions) => upload(context, target, body, uploadOptions),
    uploadMultipart: (folderId, files, multipartOptions) => uploadMultipart(context, folderId, files, multipartOptions),
    download: (target, sink, downloadOptions) => download(context, target, sink, downloadOptions),
    listChildren: (folderId, query = {}) =>
      paginate((cursor) =>
        api.GET("/api/v1/nodes/{node_id}/children", {
          params: { path: { node_id: folderId }, query: { ...query, ...(cursor === undefined ? {} : { cursor }) } },
        }),
      ),
  };
}

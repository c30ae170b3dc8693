// A sample program, written as an Expo / React Native app would use the client. It is type-checked
// in CI (`npm run typecheck`, with no Node types: only what an app has) and never run; docs/clients.md
// walks through the same steps. It covers sign-up, refresh, raw and multipart upload (the typed
// generated client and the helpers), listing with the cursor, a ranged download, a resumed download
// and error handling by `problem.type`.
import {
  createStowageClient,
  type DownloadSink,
  isProblem,
  MemorySink,
  PROBLEM_TYPES,
  type StoredTokens,
  type StowageClient,
  StowageProblem,
  type TokenPersistence,
  unwrap,
} from "@stowage/client";
import type { components } from "@stowage/client";

type NodeOut = components["schemas"]["NodeOut"];

/** The shape of expo-secure-store's async API (passed in, so this file needs no Expo package). */
interface SecureStoreLike {
  getItemAsync(key: string): Promise<string | null>;
  setItemAsync(key: string, value: string): Promise<void>;
  deleteItemAsync(key: string): Promise<void>;
}

/** Tokens kept in the device's keychain / keystore between app starts. */
export function secureStorePersistence(store: SecureStoreLike, key = "stowage.tokens"): TokenPersistence {
  return {
    async load() {
      const saved = await store.getItemAsync(key);
      return saved === null ? null : (JSON.parse(saved) as StoredTokens);
    },
    async save(tokens) {
      if (tokens === null) await store.deleteItemAsync(key);
      else await store.setItemAsync(key, JSON.stringify(tokens));
    },
  };
}

export function connect(store: SecureStoreLike, showLogin: (why: string) => void): StowageClient {
  return createStowageClient({
    baseUrl: "https://files.example.com",
    persistence: secureStorePersistence(store),
    // The server refused the refresh token (expired, revoked, reused): back to the login screen.
    onSignOut: (problem) => showLogin(problem.detail),
  });
}

/** One place that turns any problem into what the user sees, branching on the stable `type`. */
export function explain(error: unknown): string {
  if (!(error instanceof StowageProblem)) return "No connection to the server. Try again.";
  switch (error.type) {
    case PROBLEM_TYPES.conflict:
      return `That name is taken (by ${error.conflicting_id ?? "another item"}).`;
    case PROBLEM_TYPES["quota-exceeded"]:
      return `Not enough space: ${error.needed_bytes ?? 0} bytes needed, ${error.free_bytes ?? 0} free.`;
    case PROBLEM_TYPES["payload-too-large"]:
      return `The file is too large (the limit is ${error.max_size ?? "unknown"} bytes).`;
    case PROBLEM_TYPES["rate-limited"]:
      return `Too many attempts; try again in ${error.retry_after ?? 60} s.`;
    case PROBLEM_TYPES["invalid-input"]:
      return (error.errors ?? []).map((field) => `${field.field}: ${field.message}`).join("\n") || error.detail;
    default:
      return `${error.detail} (request ${error.request_id ?? "unknown"})`;
  }
}

export async function firstSession(client: StowageClient, email: string, password: string): Promise<void> {
  // Sign up (or log in when the account exists); the session store persists the pair.
  try {
    await client.session.signUp({ email, password, device_name: "Ada's phone" });
  } catch (error) {
    if (!isProblem(error, "conflict")) throw error;
    await client.session.logIn({ email, password });
  }

  // Refresh explicitly (the client also does it by itself: ahead of expiry, and once on a 401).
  const renewed: StoredTokens = await client.session.refresh();
  console.log("access token valid until", new Date(renewed.expires_at ?? 0));

  // The same through the generated client: every operation and body is typed from the document.
  const pair = await client.api.POST("/api/v1/auth/refresh", { body: { refresh_token: renewed.refresh_token } });
  if (pair.error) throw StowageProblem.from(pair.error, pair.response);
  await client.session.setTokens(pair.data);
}

export async function uploads(client: StowageClient, photo: Blob, photoUri: string): Promise<NodeOut[]> {
  const root = unwrap(await client.api.GET("/api/v1/files/root"));

  // Raw upload with progress (XMLHttpRequest on devices); missing folders are created.
  const raw = await client.upload({ path: "Photos/2026/beach.jpg" }, photo, {
    onConflict: "rename",
    onProgress: ({ loaded, total }) => console.log(`sent ${loaded} of ${total ?? "?"} bytes`),
  });
  console.log(raw.created ? "created" : "replaced", raw.node.id, raw.etag);

  // A file the image picker returned, by URI, with POST as Expo's uploadAsync sends it.
  const fromDevice = await client.upload(
    { folderId: root.id, name: "picked.jpg" },
    { uri: photoUri },
    { method: "POST" },
  );

  // Raw upload through the generated client: PUT and its POST twin, a Blob body sent as is.
  const typedPut = unwrap(
    await client.api.PUT("/api/v1/nodes/{node_id}/children/{name}", {
      params: { path: { node_id: root.id, name: "typed.jpg" }, query: { on_conflict: "replace" } },
      body: photo,
      bodySerializer: (body) => body,
      headers: { "Content-Type": "application/octet-stream" },
    }),
  );
  const typedPost = unwrap(
    await client.api.POST("/api/v1/content/{path}", {
      params: { path: { path: "Photos/posted.jpg" }, header: { "If-None-Match": "*" } },
      body: photo,
      bodySerializer: (body) => body,
    }),
  );

  // Multipart: fields before files (on_conflict after a file part is a 400).
  const helperParts = await client.uploadMultipart(
    root.id,
    [
      { name: "one.jpg", body: photo },
      { name: "two.jpg", body: { uri: photoUri, type: "image/jpeg" } },
    ],
    { onConflict: "rename" },
  );
  const typedParts = unwrap(
    await client.api.POST("/api/v1/nodes/{node_id}/upload", {
      params: { path: { node_id: root.id } },
      body: { on_conflict: "rename", file: [photo] },
      bodySerializer(body) {
        const form = new FormData();
        if (body.on_conflict) form.append("on_conflict", body.on_conflict);
        for (const file of body.file) form.append("file", file, "form.jpg");
        return form;
      },
    }),
  );
  return [raw.node, fromDevice.node, typedPut, typedPost, ...helperParts, ...typedParts.items];
}

export async function browse(client: StowageClient, folderId: string): Promise<string[]> {
  // The cursor by hand: next_cursor is null on the last page.
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = unwrap(
      await client.api.GET("/api/v1/nodes/{node_id}/children", {
        params: {
          path: { node_id: folderId },
          query: { limit: 100, sort: "modified", order: "desc", ...(cursor ? { cursor } : {}) },
        },
      }),
    );
    names.push(...page.items.map((item) => item.name));
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);

  // Or let the helper follow it.
  for await (const image of client.listChildren(folderId, { media_type: "image/", limit: 50 })) names.push(image.name);
  return names;
}

export async function downloads(client: StowageClient, file: NodeOut, partial: DownloadSink): Promise<Blob> {
  // A ranged download through the generated client: the first KiB, for a file header.
  const head = await client.api.GET("/api/v1/nodes/{node_id}/content", {
    params: { path: { node_id: file.id }, header: { Range: "bytes=0-1023" } },
    parseAs: "blob",
  });
  if (head.error !== undefined || head.data === undefined) throw StowageProblem.from(head.error, head.response);
  console.log(head.response.status, head.response.headers.get("Content-Range"));

  // A download that continues where `partial` stopped, and starts over if the file changed; in
  // ranges of 4 MiB, since React Native holds each answer in memory whole.
  const outcome = await client.download({ fileId: file.id }, partial, {
    chunkBytes: 4 * 1024 * 1024,
    onProgress: ({ loaded, total }) => console.log(`received ${loaded} of ${total ?? "?"}`),
  });
  console.log(outcome.restarted ? "the file changed: downloaded again" : `resumed at ${outcome.resumedFrom}`);

  const small = new MemorySink();
  await client.download({ path: "Photos/2026/beach.jpg" }, small);
  return head.data;
}

export async function main(
  store: SecureStoreLike,
  photo: Blob,
  photoUri: string,
  partial: DownloadSink,
): Promise<void> {
  const client = connect(store, (why) => console.log("please log in again:", why));
  try {
    await firstSession(client, "ada@example.com", "correct horse battery staple");
    const [first] = await uploads(client, photo, photoUri);
    if (first?.parent_id) console.log(await browse(client, first.parent_id));
    if (first) await downloads(client, first, partial);
  } catch (error) {
    console.log(explain(error));
  } finally {
    await client.session.logOut();
  }
}

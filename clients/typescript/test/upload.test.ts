// Uploads against the real server: progress up to the total, the bytes stored exactly, both
// transports (fetch in Node, XMLHttpRequest as React Native and browsers use), POST like PUT,
// multipart with on_conflict first, and the body sent again after a refresh.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { MemorySink, type Progress, unwrap } from "../src/index.js";
import { fileBody } from "../src/node.js";
import { clientWith, content, newUser, tokensOf, withDeadAccessToken } from "./support.js";
import { NodeXhr } from "./xhr.js";

const SIZE = 1024 * 1024 + 123;

function assertProgress(events: Progress[], total: number): void {
  assert.ok(events.length >= 2, `progress was reported ${events.length} times`);
  for (let i = 1; i < events.length; i += 1) {
    assert.ok((events[i]?.loaded ?? 0) > (events[i - 1]?.loaded ?? 0), "progress only grows");
  }
  assert.deepEqual(events.at(-1), { loaded: total, total });
}

async function stored(client: ReturnType<typeof clientWith>["client"], fileId: string): Promise<Uint8Array> {
  const sink = new MemorySink();
  await client.download({ fileId }, sink);
  return sink.bytes();
}

test("upload over fetch reports progress up to the total and stores the bytes", async () => {
  const { client } = clientWith(tokensOf(await newUser()));
  const bytes = content(SIZE, 1);
  const events: Progress[] = [];

  const outcome = await client.upload({ path: "Up/fetch.bin" }, new Blob([bytes]), {
    onProgress: (p) => events.push(p),
  });

  assert.equal(outcome.created, true);
  assert.equal(outcome.node.size, SIZE);
  assert.equal(outcome.etag, outcome.node.etag);
  assert.equal(outcome.location, `/api/v1/nodes/${outcome.node.id}`);
  assertProgress(events, SIZE);
  assert.deepEqual(await stored(client, outcome.node.id), bytes);
});

test("upload over XMLHttpRequest reports progress up to the total and stores the bytes", async () => {
  const { client } = clientWith(tokensOf(await newUser()), NodeXhr);
  const bytes = content(SIZE, 2);
  const events: Progress[] = [];
  const before = NodeXhr.sent.length;

  const outcome = await client.upload({ path: "Up/xhr.bin" }, bytes.buffer, {
    onProgress: (p) => events.push(p),
    method: "POST",
  });

  assert.equal(NodeXhr.sent.length - before, 1, "sent over XMLHttpRequest");
  assert.equal(outcome.created, true);
  assertProgress(events, SIZE);
  assert.deepEqual(await stored(client, outcome.node.id), bytes);
});

test("an upload that meets a 401 refreshes and sends the whole body again", async () => {
  const pair = await newUser();
  const root = unwrap(await fetchRoot(clientWith(tokensOf(pair)).client));
  const { client, paths } = clientWith(withDeadAccessToken(pair));
  const bytes = content(200_000, 3);
  const events: Progress[] = [];

  const outcome = await client.upload({ folderId: root.id, name: "after-refresh.bin" }, new Blob([bytes]), {
    onProgress: (p) => events.push(p),
  });

  // The server answers the dead token before reading the body and closes the connection: the
  // client sees either that 401 or, when it was still sending, a reset connection, which it checks
  // with one bodiless probe (GET /me → 401). Either way: one refresh, the body sent twice.
  const uploadPath = `PUT /api/v1/nodes/${root.id}/children/after-refresh.bin`;
  const seen = paths();
  const probed = seen.length === 4 && seen[1] === "GET /api/v1/me";
  assert.deepEqual(
    seen,
    probed
      ? [uploadPath, "GET /api/v1/me", "POST /api/v1/auth/refresh", uploadPath]
      : [uploadPath, "POST /api/v1/auth/refresh", uploadPath],
  );
  assert.equal(outcome.node.size, bytes.byteLength);
  assert.deepEqual(events.at(-1), { loaded: bytes.byteLength, total: bytes.byteLength });
  assert.deepEqual(await stored(client, outcome.node.id), bytes);
});

test("an upload over XMLHttpRequest that meets a 401 refreshes and is sent again", async () => {
  const pair = await newUser();
  const { client, paths } = clientWith(withDeadAccessToken(pair), NodeXhr);
  const before = NodeXhr.sent.length;

  const outcome = await client.upload({ path: "Up/xhr-retry.txt" }, new Blob(["hello"]));

  assert.deepEqual(
    NodeXhr.sent.slice(before).map((entry) => entry.path),
    ["/api/v1/content/Up/xhr-retry.txt", "/api/v1/content/Up/xhr-retry.txt"],
  );
  assert.deepEqual(paths(), ["POST /api/v1/auth/refresh"]);
  assert.equal(outcome.node.size, 5);
});

test("a file from disk replaces a version with If-Match, and a stale If-Match is refused", async () => {
  const { client } = clientWith(tokensOf(await newUser()));
  const first = await client.upload({ path: "Up/disk.bin" }, new Blob([content(1000, 4)]));
  const folder = await mkdtemp(join(tmpdir(), "stowage-ts-"));
  const path = join(folder, "second.bin");
  const second = content(300_000, 5);
  await writeFile(path, second);
  const events: Progress[] = [];

  const replaced = await client.upload({ fileId: first.node.id }, await fileBody(path), {
    ifMatch: first.etag ?? "",
    onProgress: (p) => events.push(p),
  });

  assert.equal(replaced.created, false);
  assert.equal(replaced.node.id, first.node.id);
  assertProgress(events, second.byteLength);
  assert.deepEqual(await stored(client, first.node.id), second);
  await assert.rejects(client.upload({ fileId: first.node.id }, new Blob(["stale"]), { ifMatch: first.etag ?? "" }), {
    name: "StowageProblem",
    status: 412,
    type: "urn:stowage:problem:precondition-failed",
  });
});

test("multipart upload sends on_conflict before the files and stores each", async () => {
  const { client } = clientWith(tokensOf(await newUser()));
  const root = unwrap(await fetchRoot(client));
  await client.upload({ folderId: root.id, name: "a.txt" }, new Blob(["old"]));
  const events: Progress[] = [];

  const nodes = await client.uploadMultipart(
    root.id,
    [
      { name: "a.txt", body: new Blob(["first file"]) },
      { name: "b.txt", body: new Blob(["second file"]) },
    ],
    { onConflict: "rename", onProgress: (p) => events.push(p) },
  );

  assert.deepEqual(
    nodes.map((node) => node.name),
    ["a (2).txt", "b.txt"],
  );
  assert.deepEqual(
    nodes.map((node) => node.size),
    [10, 11],
  );
  assert.ok(events.length > 0 && (events.at(-1)?.loaded ?? 0) > 21, "the encoded form was counted");
});

test("multipart upload over XMLHttpRequest reports progress up to the form's size", async () => {
  const { client } = clientWith(tokensOf(await newUser()), NodeXhr);
  const root = unwrap(await fetchRoot(client));
  const bytes = content(150_000, 6);
  const events: Progress[] = [];

  const nodes = await client.uploadMultipart(root.id, [{ name: "photo.bin", body: new Blob([bytes]) }], {
    onProgress: (p) => events.push(p),
  });

  assert.equal(nodes[0]?.size, bytes.byteLength);
  const last = events.at(-1);
  assert.ok(last && last.total !== null && last.loaded === last.total && last.total > bytes.byteLength);
  assert.deepEqual(await stored(client, nodes[0]?.id ?? ""), bytes);
});

function fetchRoot(client: ReturnType<typeof clientWith>["client"]) {
  return client.api.GET("/api/v1/files/root");
}

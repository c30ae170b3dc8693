// Resumable downloads against the real server: a sink that holds part of the file gets the rest
// (206 from where it stopped); a sink whose bytes belong to an older content is restarted (200),
// never spliced; a sink that holds everything is done without a byte.
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { type DownloadSink, MemorySink, type Progress } from "../src/index.js";
import { fileSink } from "../src/node.js";
import { clientWith, content, newUser, tokensOf } from "./support.js";

const SIZE = 300_001;

async function setUp(seed: number) {
  const under = clientWith(tokensOf(await newUser()));
  const bytes = content(SIZE, seed);
  const uploaded = await under.client.upload({ path: "Down/file.bin" }, new Blob([bytes]));
  return { ...under, bytes, node: uploaded.node, etag: uploaded.etag ?? "" };
}

/** A sink wrapper that records what download told it. */
function watched(sink: DownloadSink): {
  sink: DownloadSink;
  begins: { offset: number; etag: string | null; size: number | null }[];
} {
  const begins: { offset: number; etag: string | null; size: number | null }[] = [];
  return {
    begins,
    sink: {
      bytesAlreadyHave: () => sink.bytesAlreadyHave(),
      etag: () => sink.etag(),
      begin: (start) => {
        begins.push(start);
        return sink.begin(start);
      },
      write: (chunk) => sink.write(chunk),
    },
  };
}

test("an interrupted download resumes from the bytes the sink holds", async () => {
  const { client, sent, bytes, node, etag } = await setUp(11);
  const half = Math.floor(SIZE / 2);
  const memory = new MemorySink({ bytes: bytes.slice(0, half), etag });
  const { sink, begins } = watched(memory);
  const events: Progress[] = [];

  const outcome = await client.download({ fileId: node.id }, sink, { onProgress: (p) => events.push(p) });

  const request = sent.at(-1);
  assert.equal(request?.status, 206);
  assert.equal(request?.headers.get("range"), `bytes=${half}-`);
  assert.equal(request?.headers.get("if-range"), etag);
  assert.deepEqual(begins, [{ offset: half, etag, size: SIZE }]);
  assert.deepEqual(outcome, { resumedFrom: half, restarted: false, written: SIZE - half, size: SIZE, etag });
  assert.deepEqual(memory.bytes(), bytes);
  assert.deepEqual(events.at(-1), { loaded: SIZE, total: SIZE });
});

test("a file that changed between attempts is downloaded again from the start, not spliced", async () => {
  const { client, sent, bytes, node, etag } = await setUp(12);
  const half = Math.floor(SIZE / 2);
  const memory = new MemorySink({ bytes: bytes.slice(0, half), etag });
  const changed = content(SIZE, 13);
  const replaced = await client.upload({ fileId: node.id }, new Blob([changed]));
  assert.notEqual(replaced.etag, etag);

  const outcome = await client.download({ fileId: node.id }, memory);

  const request = sent.at(-1);
  assert.equal(request?.headers.get("if-range"), etag);
  assert.equal(request?.status, 200);
  assert.deepEqual(outcome, { resumedFrom: 0, restarted: true, written: SIZE, size: SIZE, etag: replaced.etag });
  assert.equal(memory.etag(), replaced.etag);
  assert.deepEqual(memory.bytes(), changed);
});

test("a sink that already holds the whole file is complete without a byte sent", async () => {
  const { client, sent, bytes, node, etag } = await setUp(14);
  const memory = new MemorySink({ bytes: bytes.slice(), etag });

  const outcome = await client.download({ path: "Down/file.bin" }, memory);

  assert.equal(sent.at(-1)?.status, 416);
  assert.deepEqual(outcome, { resumedFrom: SIZE, restarted: false, written: 0, size: SIZE, etag });
  assert.deepEqual(memory.bytes(), bytes);
  assert.equal(node.size, SIZE);
});

test("held bytes without an ETag are not trusted: the download starts over", async () => {
  const { client, sent, bytes, node } = await setUp(15);
  const memory = new MemorySink({ bytes: content(1000, 99), etag: null });

  const outcome = await client.download({ fileId: node.id }, memory);

  assert.equal(sent.at(-1)?.headers.get("range"), null);
  assert.equal(outcome.restarted, true);
  assert.deepEqual(memory.bytes(), bytes);
});

test("a file sink resumes a partial file on disk, with its ETag kept beside it", async () => {
  const { client, bytes, node, etag } = await setUp(16);
  const folder = await mkdtemp(join(tmpdir(), "stowage-ts-"));
  const path = join(folder, "file.bin");
  const third = Math.floor(SIZE / 3);
  await writeFile(path, bytes.slice(0, third));
  await writeFile(`${path}.etag`, etag);

  const outcome = await client.download({ fileId: node.id }, fileSink(path));

  assert.equal(outcome.resumedFrom, third);
  assert.deepEqual(new Uint8Array(await readFile(path)), bytes);
  assert.equal(await readFile(`${path}.etag`, "utf8"), etag);
});

test("a missing file is a not-found problem and the sink is left alone", async () => {
  const { client } = await setUp(17);
  const memory = new MemorySink();

  await assert.rejects(client.download({ path: "Down/nothing-here.bin" }, memory), {
    name: "StowageProblem",
    status: 404,
    type: "urn:stowage:problem:not-found",
  });
  assert.equal(memory.bytesAlreadyHave(), 0);
});

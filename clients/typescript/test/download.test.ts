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

test("a sink holding more than the file has is restarted, not trusted", async () => {
  const { client, sent, bytes, node, etag } = await setUp(21);
  const memory = new MemorySink({ bytes: content(SIZE + 10, 21), etag });
  const before = sent.length;

  const outcome = await client.download({ fileId: node.id }, memory);

  assert.deepEqual(
    sent.slice(before).map((request) => [request.headers.get("range"), request.status]),
    [
      [`bytes=${SIZE + 10}-`, 416],
      [null, 200],
    ],
  );
  assert.equal(outcome.restarted, true);
  assert.deepEqual(memory.bytes(), bytes);
});

test("held bytes without an ETag are not trusted: the download starts over", async () => {
  const { client, sent, bytes, node } = await setUp(15);
  const memory = new MemorySink({ bytes: content(1000, 99), etag: null });

  const outcome = await client.download({ fileId: node.id }, memory);

  assert.equal(sent.at(-1)?.headers.get("range"), null);
  assert.equal(outcome.restarted, true);
  assert.deepEqual(memory.bytes(), bytes);
});

test("a chunked download asks for one range at a time, each checked with If-Range", async () => {
  const { client, sent, bytes, node, etag } = await setUp(18);
  const held = 100_000;
  const memory = new MemorySink({ bytes: bytes.slice(0, held), etag });
  const chunk = 64 * 1024;
  const before = sent.length;

  const outcome = await client.download({ fileId: node.id }, memory, { chunkBytes: chunk });

  const requests = sent.slice(before);
  const starts = [held, held + chunk, held + 2 * chunk, held + 3 * chunk];
  assert.deepEqual(
    requests.map((request) => request.headers.get("range")),
    starts.map((from) => `bytes=${from}-${from + chunk - 1}`),
  );
  assert.deepEqual(
    requests.map((request) => request.headers.get("if-range")),
    [etag, etag, etag, etag],
  );
  assert.deepEqual(
    requests.map((request) => request.status),
    [206, 206, 206, 206],
  );
  assert.deepEqual(outcome, { resumedFrom: held, restarted: false, written: SIZE - held, size: SIZE, etag });
  assert.deepEqual(memory.bytes(), bytes);
});

test("a file that changes between chunks is downloaded again from the start", async () => {
  const { client, sent, node, etag } = await setUp(19);
  const changed = content(SIZE, 20);
  let replacedEtag: string | null = null;
  const memory = new MemorySink();
  const sink: DownloadSink = {
    bytesAlreadyHave: () => memory.bytesAlreadyHave(),
    etag: () => memory.etag(),
    begin: (start) => memory.begin(start),
    async write(chunk) {
      memory.write(chunk);
      // Once the first chunk is in, someone replaces the file before the next request.
      if (replacedEtag === null && memory.bytesAlreadyHave() >= 100_000) {
        replacedEtag = (await client.upload({ fileId: node.id }, new Blob([changed]))).etag;
      }
    },
  };
  const before = sent.length;

  const outcome = await client.download({ fileId: node.id }, sink, { chunkBytes: 100_000 });

  const downloads = sent.slice(before).filter((request) => request.method === "GET");
  assert.deepEqual(
    downloads.map((request) => [request.headers.get("range"), request.headers.get("if-range"), request.status]),
    [
      ["bytes=0-99999", null, 206],
      ["bytes=100000-199999", etag, 200],
    ],
  );
  assert.ok(replacedEtag !== null && replacedEtag !== etag);
  assert.deepEqual(outcome, { resumedFrom: 0, restarted: true, written: SIZE, size: SIZE, etag: replacedEtag });
  assert.deepEqual(memory.bytes(), changed);
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

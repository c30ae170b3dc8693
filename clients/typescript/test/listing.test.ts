// Listings follow next_cursor to the last page.
import assert from "node:assert/strict";
import { test } from "node:test";

import { paginate, unwrap } from "../src/index.js";
import { clientWith, newUser, tokensOf } from "./support.js";

test("listChildren follows the cursor through every page", async () => {
  const { client, paths } = clientWith(tokensOf(await newUser()));
  const folder = unwrap(await client.api.POST("/api/v1/folders", { body: { path: "Many" } }));
  const names = ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"];
  for (const name of names) await client.upload({ folderId: folder.id, name }, new Blob([name]));
  const before = paths().length;

  const listed: string[] = [];
  for await (const node of client.listChildren(folder.id, { limit: 2, sort: "name" })) listed.push(node.name);

  assert.deepEqual(listed, names);
  const pages = paths().slice(before);
  assert.deepEqual(pages, Array(3).fill(`GET /api/v1/nodes/${folder.id}/children`));
});

test("paginate works for any paged operation (search)", async () => {
  const { client } = clientWith(tokensOf(await newUser()));
  for (const name of ["x1.txt", "x2.txt", "x3.txt"]) await client.upload({ path: `S/${name}` }, new Blob([name]));

  const hits: string[] = [];
  const pages = paginate((cursor) =>
    client.api.GET("/api/v1/search", {
      params: { query: { q: "x", kind: "file", sort: "name", limit: 1, ...(cursor ? { cursor } : {}) } },
    }),
  );
  for await (const hit of pages) hits.push(hit.name);

  assert.deepEqual(hits, ["x1.txt", "x2.txt", "x3.txt"]);
});

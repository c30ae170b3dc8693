// Errors arrive as StowageProblem with the server's own type, status, detail and request id.
import assert from "node:assert/strict";
import { test } from "node:test";

import { isProblem, PROBLEM_TYPES, StowageProblem, unwrap } from "../src/index.js";
import { BASE_URL, clientWith, newUser, PASSWORD, tokensOf } from "./support.js";

test("an error answer is a StowageProblem with the server's type, status and request_id", async () => {
  const pair = await newUser();
  const { client } = clientWith(tokensOf(pair));
  const requestId = `ts-client-test-${Date.now()}`;

  const result = await client.api.GET("/api/v1/nodes/{node_id}", {
    params: { path: { node_id: "00000000-0000-0000-0000-000000000000" } },
    headers: { "X-Request-ID": requestId },
  });
  let caught: unknown;
  try {
    unwrap(result);
  } catch (error) {
    caught = error;
  }

  assert.ok(caught instanceof StowageProblem);
  assert.ok(caught instanceof Error);
  assert.equal(caught.type, "urn:stowage:problem:not-found");
  assert.equal(caught.code, "not-found");
  assert.equal(caught.status, 404);
  assert.equal(caught.title, "Not found");
  assert.equal(caught.request_id, requestId);
  assert.equal(caught.instance, "/api/v1/nodes/00000000-0000-0000-0000-000000000000");
  assert.ok(caught.detail.length > 0);
  assert.ok(isProblem(caught, "not-found"));
  assert.ok(!isProblem(caught, "conflict"));
});

test("extension members come along: a name conflict names the conflicting id", async () => {
  const pair = await newUser();
  const { client } = clientWith(tokensOf(pair));
  const first = await client.upload({ path: "Clash/a.txt" }, new Blob(["one"]));

  const error = await client.upload({ path: "Clash/a.txt" }, new Blob(["two"])).then(
    () => assert.fail("a second upload to the same name must be refused"),
    (problem: unknown) => problem,
  );

  assert.ok(isProblem(error, "conflict"));
  assert.equal(error.status, 409);
  assert.equal(error.conflicting_id, first.node.id);
});

test("a failed sign-up throws the server's invalid-input problem with its field errors", async () => {
  const { client } = clientWith(null);

  const error = await client.session.signUp({ email: "not-an-email", password: PASSWORD }).then(
    () => assert.fail("sign-up with a bad email must be refused"),
    (problem: unknown) => problem,
  );

  assert.ok(error instanceof StowageProblem);
  assert.equal(error.type, PROBLEM_TYPES["invalid-input"]);
  assert.equal(error.status, 400);
  assert.ok(
    error.errors?.some((item) => item.field === "body.email"),
    JSON.stringify(error.errors),
  );
  assert.equal(await client.session.tokens(), null);
});

test("fromText reads an answer received elsewhere (Expo's uploadAsync result)", async () => {
  const raw = await fetch(`${BASE_URL}/api/v1/me`);
  const headers: Record<string, string> = {};
  raw.headers.forEach((value, name) => {
    headers[name] = value;
  });

  const problem = StowageProblem.fromText(raw.status, await raw.text(), headers);

  assert.equal(problem.type, PROBLEM_TYPES.unauthenticated);
  assert.equal(problem.status, 401);
  assert.equal(problem.request_id, headers["x-request-id"]);
});

test("a non-problem error answer still becomes a StowageProblem (about:blank)", () => {
  const response = new Response("<html>Bad gateway</html>", {
    status: 502,
    statusText: "Bad Gateway",
    headers: { "X-Request-ID": "proxy-1" },
  });

  const problem = StowageProblem.from("<html>Bad gateway</html>", response);

  assert.equal(problem.type, "about:blank");
  assert.equal(problem.status, 502);
  assert.equal(problem.title, "Bad Gateway");
  assert.equal(problem.request_id, "proxy-1");
});

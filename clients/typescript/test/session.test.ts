// The token store against the real server: refresh once on 401 and retry, share one refresh among
// concurrent 401s, and sign out (without looping) when the server refuses the refresh token.
import assert from "node:assert/strict";
import { test } from "node:test";

import { isProblem, PROBLEM_TYPES, unwrap } from "../src/index.js";
import { clientWith, newUser, tokensOf, withDeadAccessToken } from "./support.js";

test("a 401 is refreshed once and the request retried with the new token", async () => {
  const pair = await newUser();
  const { client, sent, paths } = clientWith(withDeadAccessToken(pair));

  const me = unwrap(await client.api.GET("/api/v1/me"));

  assert.equal(me.email, pair.email);
  assert.deepEqual(paths(), ["GET /api/v1/me", "POST /api/v1/auth/refresh", "GET /api/v1/me"]);
  assert.deepEqual(
    sent.map((entry) => entry.status),
    [401, 200, 200],
  );
  const stored = await client.session.tokens();
  assert.ok(stored);
  assert.notEqual(stored.refresh_token, pair.refresh_token, "the refresh token rotated and the new one is kept");
  assert.equal(sent[2]?.authorization, `Bearer ${stored.access_token}`);
});

test("a request with a JSON body is sent again, whole, after the refresh", async () => {
  const pair = await newUser();
  const { client, paths } = clientWith(withDeadAccessToken(pair));

  const folder = unwrap(await client.api.POST("/api/v1/folders", { body: { path: "Retried/Body" } }));

  assert.equal(folder.name, "Body");
  assert.deepEqual(paths(), ["POST /api/v1/folders", "POST /api/v1/auth/refresh", "POST /api/v1/folders"]);
});

test("a refused refresh signs out once, returns the 401 and sends nothing more", async () => {
  const pair = await newUser();
  const dead = withDeadAccessToken(pair);
  const { client, sent, paths, signOuts } = clientWith({ ...dead, refresh_token: "srt_not-a-token-of-this-server" });

  const result = await client.api.GET("/api/v1/me");

  assert.equal(result.response.status, 401);
  assert.equal(result.error?.type, PROBLEM_TYPES.unauthenticated);
  assert.deepEqual(paths(), ["GET /api/v1/me", "POST /api/v1/auth/refresh"]);
  assert.deepEqual(
    sent.map((entry) => entry.status),
    [401, 401],
  );
  assert.deepEqual(signOuts, [PROBLEM_TYPES.unauthenticated]);
  assert.equal(await client.session.tokens(), null);

  // Signed out: the next request goes without credentials and is not refreshed either.
  const again = await client.api.GET("/api/v1/me");
  assert.equal(again.response.status, 401);
  assert.deepEqual(paths(), ["GET /api/v1/me", "POST /api/v1/auth/refresh", "GET /api/v1/me"]);
  assert.equal(sent[2]?.authorization, null);
  assert.equal(signOuts.length, 1);
});

test("a spent refresh token ends the session: sign-out, no second refresh", async () => {
  const pair = await newUser();
  // Spend the refresh token elsewhere (another device): the server now refuses it.
  const other = clientWith(tokensOf(pair));
  await other.client.session.refresh();
  const { client, paths, signOuts } = clientWith(withDeadAccessToken(pair));

  await assert.rejects(client.session.refresh(), (error) => isProblem(error, "unauthenticated"));

  assert.deepEqual(paths(), ["POST /api/v1/auth/refresh"]);
  assert.deepEqual(signOuts, [PROBLEM_TYPES.unauthenticated]);
  assert.equal(await client.session.tokens(), null);
});

test("concurrent 401s share one refresh and all succeed", async () => {
  const pair = await newUser();
  const { client, sent, paths } = clientWith(withDeadAccessToken(pair));

  const answers = await Promise.all([
    client.api.GET("/api/v1/me"),
    client.api.GET("/api/v1/files/root"),
    client.api.GET("/api/v1/me/sessions"),
    client.api.GET("/api/v1/me"),
  ]);

  assert.deepEqual(
    answers.map((answer) => answer.response.status),
    [200, 200, 200, 200],
  );
  assert.equal(paths().filter((path) => path === "POST /api/v1/auth/refresh").length, 1);
  assert.equal(sent.filter((entry) => entry.status === 401).length, 4);
  assert.equal(sent.length, 4 + 1 + 4);
  // Had each 401 spent the refresh token, the server would have ended the session: it is alive.
  const stored = await client.session.tokens();
  assert.ok(stored);
  const after = await fetch(`${client.baseUrl}/api/v1/me`, {
    headers: { Authorization: `Bearer ${stored.access_token}` },
  });
  assert.equal(after.status, 200);
});

test("a connection reset while the token is dead: one probe, one refresh, the request sent again", async () => {
  const pair = await newUser();
  // The first PUT fails as it does when the server answers 401 and closes mid-body.
  let resets = 0;
  const fault = (request: { method: string }): boolean => request.method === "PUT" && resets++ === 0;
  const { client, sent, paths } = clientWith(withDeadAccessToken(pair), null, fault);

  const outcome = await client.upload({ path: "Reset/after-probe.txt" }, new Blob(["resent"]));

  const put = "PUT /api/v1/content/Reset/after-probe.txt";
  assert.deepEqual(paths(), [put, "GET /api/v1/me", "POST /api/v1/auth/refresh", put]);
  assert.deepEqual(
    sent.map((entry) => entry.status),
    [undefined, 401, 200, 201],
  );
  assert.equal(outcome.node.size, 6);
});

test("a connection reset with a good token is the caller's network error: no refresh, no resend", async () => {
  const pair = await newUser();
  const fault = (request: { method: string }): boolean => request.method === "PUT";
  const { client, paths, signOuts } = clientWith(tokensOf(pair), null, fault);

  await assert.rejects(client.upload({ path: "Reset/never.txt" }, new Blob(["x"])), {
    name: "TypeError",
    message: "fetch failed",
  });

  assert.deepEqual(paths(), ["PUT /api/v1/content/Reset/never.txt", "GET /api/v1/me"]);
  assert.deepEqual(signOuts, []);
  assert.equal((await client.session.tokens())?.refresh_token, pair.refresh_token);
});

test("an access token about to expire is refreshed before the request, not after a 401", async () => {
  const pair = await newUser();
  const { client, sent, paths } = clientWith({ ...tokensOf(pair), expires_at: Date.now() + 5_000 });

  unwrap(await client.api.GET("/api/v1/me"));

  assert.deepEqual(paths(), ["POST /api/v1/auth/refresh", "GET /api/v1/me"]);
  assert.deepEqual(
    sent.map((entry) => entry.status),
    [200, 200],
  );
});

test("accessToken() hands out a token that works, refreshed first when it is about to expire", async () => {
  const pair = await newUser();
  const { client, paths } = clientWith({ ...tokensOf(pair), expires_at: Date.now() + 1_000 });

  const token = await client.session.accessToken();

  assert.deepEqual(paths(), ["POST /api/v1/auth/refresh"]);
  assert.notEqual(token, pair.access_token);
  const me = await fetch(`${client.baseUrl}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(me.status, 200);
  assert.equal(await client.session.accessToken(), token, "a fresh token is not refreshed again");
  assert.equal(paths().length, 1);
});

test("sign-up and login through the session store the pair; logout ends it on the server", async () => {
  const { client } = clientWith(null);
  const email = `ts-login-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const pair = await client.session.signUp({ email, password: "correct horse battery staple" });
  assert.equal((await client.session.tokens())?.access_token, pair.access_token);

  const again = await client.session.logIn({ email, password: "correct horse battery staple" });
  assert.equal((await client.session.tokens())?.refresh_token, again.refresh_token);

  await client.session.logOut();
  assert.equal(await client.session.tokens(), null);
  const refused = await fetch(`${client.baseUrl}/api/v1/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: again.refresh_token }),
  });
  assert.equal(refused.status, 401);
});

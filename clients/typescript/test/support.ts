// Shared by the tests: the server under test (STOWAGE_URL, started by tests/test_typescript_client.py
// or by hand), fresh users, a fetch that records every request it sends, and test content.
import { randomUUID } from "node:crypto";

import {
  createStowageClient,
  memoryPersistence,
  type StoredTokens,
  type StowageClient,
  type TokenPair,
} from "../src/index.js";
import type { XhrConstructor } from "../src/transport.js";

export const BASE_URL = (() => {
  const url = process.env["STOWAGE_URL"];
  if (!url) throw new Error("set STOWAGE_URL to the base URL of a running Stowage server (npm test runs against it)");
  return url.replace(/\/+$/, "");
})();

export const PASSWORD = "correct horse battery staple";

/** A request as it left the client, and the status it got. */
export interface Sent {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | null;
  readonly headers: Headers;
  status?: number;
}

/** Decides whether a request fails on the network (a reset connection) instead of being sent. */
export type Fault = (request: Sent) => boolean;

/**
 * The global fetch, recording every request (the tests count them: no loops, one refresh); `fault`
 * makes chosen requests fail as a reset connection does (a TypeError, as fetch reports it).
 */
export function recordingFetch(fault?: Fault): { fetch: typeof fetch; sent: Sent[]; paths(): string[] } {
  const sent: Sent[] = [];
  const recorder = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const entry: Sent = {
      method: request.method,
      path: url.pathname + url.search,
      authorization: request.headers.get("authorization"),
      headers: request.headers,
    };
    sent.push(entry);
    if (fault?.(entry)) {
      await request.body?.cancel();
      throw new TypeError("fetch failed", { cause: new Error("write EPIPE (injected)") });
    }
    // This Request now owns the body (a stream can be read once): it is what goes out.
    const response = await fetch(request);
    entry.status = response.status;
    return response;
  };
  return {
    fetch: recorder as typeof fetch,
    sent,
    paths: () => sent.map((entry) => `${entry.method} ${entry.path.split("?")[0]}`),
  };
}

/** A new account on the server; its token pair (sign-up goes around the client under test). */
export async function newUser(): Promise<TokenPair & { email: string }> {
  const email = `ts-${randomUUID()}@example.com`;
  const response = await fetch(`${BASE_URL}/api/v1/auth/signup`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  if (response.status !== 201 && response.status !== 200)
    throw new Error(`sign-up answered ${response.status}: ${await response.text()}`);
  return { ...((await response.json()) as TokenPair), email };
}

/** Tokens for `pair` that look valid to the client but whose access token the server refuses. */
export function withDeadAccessToken(pair: TokenPair): StoredTokens {
  // A well-formed JWT the server did not sign: a real 401 from the server, deterministically.
  const dead = `${pair.access_token.split(".").slice(0, 2).join(".")}.c2lnbmF0dXJlLW5vdC1mcm9tLXRoaXMtc2VydmVy`;
  return { access_token: dead, refresh_token: pair.refresh_token, expires_at: Date.now() + 600_000 };
}

export interface ClientUnderTest {
  readonly client: StowageClient;
  readonly sent: Sent[];
  paths(): string[];
  readonly signOuts: string[];
}

/**
 * A client with recorded requests, starting from `tokens`; `xhr` selects the XMLHttpRequest
 * transport, `fault` fails chosen requests on the network.
 */
export function clientWith(
  tokens: StoredTokens | null,
  xhr: XhrConstructor | null = null,
  fault?: Fault,
): ClientUnderTest {
  const recorder = recordingFetch(fault);
  const signOuts: string[] = [];
  const client = createStowageClient({
    baseUrl: BASE_URL,
    persistence: memoryPersistence(tokens),
    fetch: recorder.fetch,
    XMLHttpRequest: xhr,
    onSignOut: (reason) => signOuts.push(reason.type),
  });
  return { client, sent: recorder.sent, paths: recorder.paths, signOuts };
}

export function tokensOf(pair: TokenPair): StoredTokens {
  return {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
  };
}

/** `size` bytes that differ from any other `seed`'s (so a spliced download shows). */
export function content(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 31 + seed * 101 + (i >> 8)) & 0xff;
  return bytes;
}

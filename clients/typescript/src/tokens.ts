// The session: an access token (short-lived JWT) and a refresh token (single use, rotating), kept
// in a pluggable persistence (SecureStore in an app, memory in tests) and renewed when the server
// says the access token no longer works.
//
// Rules this module keeps, because the server punishes the alternatives:
// - A refresh token may be spent once. Presenting a spent one again ends the whole session, so
//   concurrent 401s share one refresh (single flight) instead of each spending the token.
// - A request is retried at most once after a refresh: a second 401 is returned, never refreshed
//   again, so a broken account cannot make the client loop.
// - Only a refusal of the refresh token itself (400/401/403) signs the user out. A network error,
//   a 429 or a 5xx during refresh keeps the tokens: the next request may succeed.
import { StowageProblem } from "./problem.js";
import type { components } from "./schema.js";

export type TokenPair = components["schemas"]["TokenPair"];
export type SignupRequest = components["schemas"]["SignupRequest"];
export type LoginRequest = components["schemas"]["LoginRequest"];

/** What is persisted between app starts. */
export interface StoredTokens {
  readonly access_token: string;
  readonly refresh_token: string;
  /** When the access token expires, in ms since the epoch on this device's clock (null: unknown). */
  readonly expires_at: number | null;
}

/**
 * Where tokens live between app starts: expo-secure-store, Keychain, localStorage, a file. `save(null)`
 * forgets them (sign-out). Both may be synchronous or return promises.
 */
export interface TokenPersistence {
  load(): StoredTokens | null | Promise<StoredTokens | null>;
  save(tokens: StoredTokens | null): void | Promise<void>;
}

/** Tokens kept in memory only (tests, scripts, a web page that must not persist them). */
export function memoryPersistence(initial: StoredTokens | null = null): TokenPersistence {
  let tokens = initial;
  return {
    load: () => tokens,
    save: (next) => {
      tokens = next;
    },
  };
}

export type FetchFunction = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/** Sends one attempt of a request with the given Authorization value (null: send none). */
export type Attempt = (authorization: string | null) => Promise<Response>;

export interface SendOptions {
  /** The request can be sent a second time (false for a one-shot stream body). Default true. */
  readonly replayable?: boolean;
  /** The request has a body: a network error may hide an early 401 (see `send`). Default false. */
  readonly sendsBody?: boolean;
}

export interface TokenStoreOptions {
  baseUrl: string;
  persistence?: TokenPersistence;
  /** The transport for the auth calls (default: the global fetch). */
  fetch?: FetchFunction;
  /** Called once each time the session ends because the server refused the refresh token. */
  onSignOut?: (reason: StowageProblem) => void;
  /** Refresh before sending when the access token expires within this many ms (default 30 s). */
  refreshMarginMs?: number;
}

export class TokenStore {
  readonly baseUrl: string;
  private readonly persistence: TokenPersistence;
  private readonly transport: FetchFunction;
  private readonly signOutListeners = new Set<(reason: StowageProblem) => void>();
  private readonly refreshMarginMs: number;
  /** undefined until loaded from persistence once; null when signed out. */
  private current: StoredTokens | null | undefined;
  private refreshing: Promise<StoredTokens> | null = null;

  constructor(options: TokenStoreOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.persistence = options.persistence ?? memoryPersistence();
    const transport = options.fetch;
    // Called through a closure: a bare reference to window.fetch throws "Illegal invocation".
    this.transport = transport ?? ((input, init) => fetch(input, init));
    this.refreshMarginMs = options.refreshMarginMs ?? 30_000;
    if (options.onSignOut) this.signOutListeners.add(options.onSignOut);
  }

  /** Listen for sign-outs caused by a refused refresh; returns the function that stops listening. */
  onSignOut(listener: (reason: StowageProblem) => void): () => void {
    this.signOutListeners.add(listener);
    return () => this.signOutListeners.delete(listener);
  }

  /** The stored tokens (loaded from persistence on first use), or null when signed out. */
  async tokens(): Promise<StoredTokens | null> {
    if (this.current === undefined) this.current = (await this.persistence.load()) ?? null;
    return this.current;
  }

  /**
   * An access token to send now (refreshed first when it is about to expire), or null when signed
   * out: for requests the client does not send itself (Expo's uploadAsync, an Image's headers).
   */
  async accessToken(): Promise<string | null> {
    return (await this.freshTokens())?.access_token ?? null;
  }

  /** Replace the tokens (a pair from sign-up, login or refresh) and persist them; null forgets them. */
  async setTokens(tokens: TokenPair | StoredTokens | null): Promise<StoredTokens | null> {
    const stored = tokens === null ? null : "expires_in" in tokens ? fromPair(tokens) : tokens;
    this.current = stored;
    await this.persistence.save(stored);
    return stored;
  }

  async signUp(body: SignupRequest): Promise<TokenPair> {
    return this.obtainPair("/api/v1/auth/signup", body);
  }

  async logIn(body: LoginRequest): Promise<TokenPair> {
    return this.obtainPair("/api/v1/auth/login", body);
  }

  /**
   * End this session on the server (best effort: a server that cannot be reached still forgets
   * nothing it should) and forget the tokens here. Not reported to onSignOut: the user asked for it.
   */
  async logOut(): Promise<void> {
    const tokens = await this.tokens();
    await this.setTokens(null);
    if (tokens === null) return;
    try {
      const response = await this.transport(`${this.baseUrl}/api/v1/auth/logout`, {
        method: "POST",
        headers: { Authorization: `Bearer ${tokens.access_token}` },
      });
      await response.body?.cancel();
    } catch {
      // Offline: the refresh token expires on its own; the tokens are already gone from this device.
    }
  }

  /**
   * Trade the refresh token for a new pair now. Concurrent callers share one request. Throws the
   * server's problem; a refused refresh token (400/401/403) also signs out.
   */
  refresh(): Promise<StoredTokens> {
    this.refreshing ??= this.refreshOnce().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /**
   * Run a request with the current access token; on 401 refresh once (shared with concurrent
   * callers) and run it once more. `replayable: false` (a one-shot stream body) still renews the
   * tokens but returns the 401 instead of retrying. A request with a body that fails on the network
   * is checked with one bodiless probe (see below) and, if the token was the cause, handled like a 401.
   */
  async send(attempt: Attempt, { replayable = true, sendsBody = false }: SendOptions = {}): Promise<Response> {
    const tokens = await this.freshTokens();
    const used = tokens?.access_token ?? null;
    let first: Response;
    try {
      first = await attempt(used === null ? null : `Bearer ${used}`);
    } catch (error) {
      if (used === null || !sendsBody || isAbort(error)) throw error;
      // The server refuses a bad token before reading the body and closes the connection, so a
      // client still sending a large body may see the connection reset instead of the 401 (Node's
      // fetch does). Ask with a bodiless request whether the token still works.
      const probe = await this.probe(used).catch(() => null);
      if (probe === null || probe.status !== 401) {
        await probe?.body?.cancel();
        throw error;
      }
      first = probe;
    }
    if (first.status !== 401 || used === null) return first;

    let renewed: StoredTokens | null;
    try {
      renewed = await this.renewAfter401(used);
    } catch (error) {
      // A refused refresh has signed out: the caller gets the original 401 (its body unread).
      if (error instanceof StowageProblem && isRefusal(error.status)) return first;
      await first.body?.cancel();
      throw error;
    }
    if (renewed === null || !replayable) return first;
    await first.body?.cancel();
    return attempt(`Bearer ${renewed.access_token}`);
  }

  /**
   * fetch with the session's Authorization header and the refresh-once rule; the `fetch` given to
   * openapi-fetch. A request with a body is cloned so it can be sent twice: for large files use
   * StowageClient.upload, which re-reads its Blob instead of holding a copy.
   */
  readonly fetch: FetchFunction = (input, init) => {
    const original = new Request(input, init);
    const hasBody = original.method !== "GET" && original.method !== "HEAD";
    let attempts = 0;
    const attempt: Attempt = async (authorization) => {
      attempts += 1;
      // The first attempt sends a copy, so the original is still unread for the retry.
      const base = hasBody && attempts === 1 ? original.clone() : original;
      const headers = new Headers(base.headers);
      if (authorization === null) headers.delete("Authorization");
      else headers.set("Authorization", authorization);
      return this.transport(new Request(base, { headers }));
    };
    return this.send(attempt, { sendsBody: hasBody });
  };

  /** A cheap authenticated request with `access`: its answer says whether the token is accepted. */
  private probe(access: string): Promise<Response> {
    return this.transport(`${this.baseUrl}/api/v1/me`, { headers: { Authorization: `Bearer ${access}` } });
  }

  /** Tokens to send now: refreshed first when the access token is (nearly) expired. */
  private async freshTokens(): Promise<StoredTokens | null> {
    const tokens = await this.tokens();
    if (tokens?.expires_at == null || tokens.expires_at - this.refreshMarginMs > Date.now()) return tokens;
    try {
      return await this.refresh();
    } catch {
      // Sent as it is: a refused refresh has signed out (the answer will be a 401 we do not retry);
      // after a transient failure the token may still be good for its last seconds.
      return this.tokens();
    }
  }

  /** After a 401 for `stale`: the newer tokens another request already obtained, or a refresh. */
  private async renewAfter401(stale: string): Promise<StoredTokens | null> {
    const tokens = await this.tokens();
    if (tokens === null) return null;
    if (tokens.access_token !== stale) return tokens;
    return this.refresh();
  }

  private async refreshOnce(): Promise<StoredTokens> {
    const tokens = await this.tokens();
    if (tokens === null) {
      throw new StowageProblem({
        type: "urn:stowage:problem:unauthenticated",
        title: "Authentication is required",
        status: 401,
        detail: "Signed out: there is no refresh token; log in again.",
        request_id: null,
        instance: null,
      });
    }
    const response = await this.post("/api/v1/auth/refresh", { refresh_token: tokens.refresh_token });
    if (response.ok) {
      const stored = await this.setTokens((await response.json()) as TokenPair);
      return stored as StoredTokens;
    }
    const problem = await StowageProblem.fromResponse(response);
    // Only the tokens this refresh spent are forgotten: a login that happened meanwhile stays.
    if (isRefusal(problem.status) && this.current?.refresh_token === tokens.refresh_token) {
      await this.setTokens(null);
      for (const listener of [...this.signOutListeners]) listener(problem);
    }
    throw problem;
  }

  private async obtainPair(path: string, body: unknown): Promise<TokenPair> {
    const response = await this.post(path, body);
    if (!response.ok) throw await StowageProblem.fromResponse(response);
    const pair = (await response.json()) as TokenPair;
    await this.setTokens(pair);
    return pair;
  }

  private post(path: string, body: unknown): Promise<Response> {
    return this.transport(`${this.baseUrl}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }
}

function fromPair(pair: TokenPair): StoredTokens {
  return {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
  };
}

function isAbort(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { name?: unknown }).name === "AbortError";
}

/** The statuses with which the server refuses a refresh token for good (as opposed to "try later"). */
function isRefusal(status: number): boolean {
  return status === 400 || status === 401 || status === 403;
}

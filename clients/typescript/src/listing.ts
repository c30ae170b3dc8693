// Listings page with an opaque cursor: `next_cursor` names the next page and is null (or absent) on
// the last one. These helpers follow it, so callers iterate items and never handle cursors.
import { StowageProblem } from "./problem.js";

/** The shape of every paged answer (children, search, trash, starred, recent…). */
export interface Page<T> {
  readonly items: readonly T[];
  readonly next_cursor?: string | null;
}

/** What an openapi-fetch call for one page resolves to. */
export interface PageResult<T> {
  readonly data?: Page<T>;
  readonly error?: unknown;
  readonly response: Response;
}

/**
 * Every item of a paged listing, page by page: `fetchPage(cursor)` asks for one page (no cursor
 * for the first). Throws the server's problem as a StowageProblem.
 *
 *   for await (const hit of paginate((cursor) => client.api.GET("/api/v1/search", { params: { query: { q, cursor } } })))
 */
export async function* paginate<T>(
  fetchPage: (cursor: string | undefined) => Promise<PageResult<T>>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | undefined;
  const seen = new Set<string>();
  for (;;) {
    const result = await fetchPage(cursor);
    if (!result.response.ok || result.data === undefined) throw StowageProblem.from(result.error, result.response);
    yield* result.data.items;
    const next = result.data.next_cursor;
    if (next === null || next === undefined || next === "") return;
    // A cursor seen before would repeat pages forever: stop instead of looping.
    if (seen.has(next)) throw new Error(`the server repeated the cursor ${next}`);
    seen.add(next);
    cursor = next;
  }
}

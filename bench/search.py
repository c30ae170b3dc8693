"""Search latency: the search service over one user's tree of N nodes, on SQLite or PostgreSQL.

    .venv/bin/python bench/search.py                                   # 100000 nodes, SQLite
    .venv/bin/python bench/search.py --backend postgresql              # the local server's test database
    .venv/bin/python bench/search.py --nodes 20000 --repeat 50 --explain --json /tmp/search.json

Builds a throw-away database with the project's own ``Database`` and migrations (a temporary data
folder for SQLite; a fresh schema ``bench_<hex>`` for PostgreSQL, dropped at the end unless ``--keep``),
then bulk-inserts with SQLAlchemy Core:

* the measured user: a root, 20 top-level folders, year folders and topic folders below them (about
  8% of the nodes are folders, up to 4 levels deep), and files of mixed types with names like
  ``harbour-sunset-2019-004211.jpg``, log-normal sizes, modification times over ten years, upload
  times over two years; 0.5% starred, 2% in the trash, 3% with custom metadata;
* other users with ``--other-nodes`` nodes between them (default N/2), so the owner filter matters.

On PostgreSQL the trigram index is dropped during the load and rebuilt after it (a bulk load into a
GIN index is slow; the index is the same either way), then ``VACUUM ANALYZE`` brings statistics and
the GIN pending list to where autovacuum would have them. SQLite gets no ``ANALYZE``: the server never
runs it, so the planner works from the schema alone, as in production.

Each query calls ``SearchService`` (``FileServices.build``) directly: the time includes SQL, loading
the rows into ORM objects and building the page, not HTTP. Each runs twice to warm up, then
``--repeat`` times; the table shows the median and the fastest run in milliseconds, and how many items
the first page held. ``--explain`` prints each query's plan (EXPLAIN QUERY PLAN / EXPLAIN).
"""

# A command-line script: it prints its report and has one long main().
# ruff: noqa: T201, S311, PLR0915, SIM905

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, insert, select

from stowage.blobs import LocalBlobStore
from stowage.config import Settings, load_settings
from stowage.db import migrate
from stowage.db.base import search_key
from stowage.db.engine import Database
from stowage.db.tables import Node, User
from stowage.files.schemas import NodePage, SearchQuery
from stowage.files.services import FileDeps, FileServices
from stowage.files.services._common import encode_cursor
from stowage.policy import CredentialKind, Principal, Role, Scope

DEFAULT_POSTGRES_URL = os.environ.get("STOWAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TRIGRAM_INDEX = "ix_nodes_search_name_trgm"
BATCH = 2000
MIB = 1 << 20

TOP_FOLDERS = (
    "Photos Documents Music Projects Archive Videos Taxes Recipes Travel Work School Family Backups Books "
    "Design Code Invoices Scans Downloads Shared"
).split()
WORDS = (
    "harbour sunset mountain river garden city winter summer autumn spring meeting budget draft final "
    "report invoice contract notes lecture chapter album concert holiday birthday wedding portrait beach "
    "forest island bridge market kitchen office garage project sketch plan review summary letter receipt"
).split()
# (extension, media type, share of files, median size in bytes)
FILE_TYPES = (
    ("jpg", "image/jpeg", 0.33, 3 * MIB),
    ("png", "image/png", 0.08, 600_000),
    ("heic", "image/heic", 0.04, 2 * MIB),
    ("mp4", "video/mp4", 0.04, 80 * MIB),
    ("mp3", "audio/mpeg", 0.07, 5 * MIB),
    ("pdf", "application/pdf", 0.10, 400_000),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 0.05, 60_000),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 0.03, 40_000),
    ("txt", "text/plain", 0.10, 4_000),
    ("md", "text/markdown", 0.05, 3_000),
    ("zip", "application/zip", 0.05, 20 * MIB),
    ("bin", "application/octet-stream", 0.06, 1 * MIB),
)
RARE_WORD = "zebra"  # in exactly RARE_COUNT file names of the measured user: a selective query
RARE_COUNT = 12


# --- the tree -------------------------------------------------------------------------------------


@dataclass
class Tree:
    """Rows to insert, parents before children, and what the queries need to know about them."""

    user_id: str
    root_id: str
    top_ids: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    folders: int = 0


def _node(rng: random.Random, owner: str, parent: str | None, *, kind: str, name: str, now: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "owner_id": owner,
        "parent_id": parent,
        "kind": kind,
        "name": name,
        "search_name": search_key(name),
        "size": 0,
        "media_type": None,
        "sha256": None,
        "created_at": now,
        "modified_at": now,
        "trashed_at": None,
        "trash_root_id": None,
        "starred": False,
        "properties": None,
        "uploaded_at": None,
    }


def build_tree(rng: random.Random, user_id: str, nodes: int, now: datetime) -> Tree:
    """About 8% folders (top level, years, topics), the rest files spread over every folder."""
    root = _node(rng, user_id, None, kind="folder", name="", now=now)
    tree = Tree(user_id=user_id, root_id=root["id"], rows=[root])
    folder_budget = max(len(TOP_FOLDERS), int(nodes * 0.08))
    levels: list[list[str]] = [[root["id"]]]
    for name in TOP_FOLDERS[: min(len(TOP_FOLDERS), folder_budget)]:
        row = _node(rng, user_id, root["id"], kind="folder", name=name, now=now - timedelta(days=rng.randrange(3650)))
        tree.rows.append(row)
        tree.top_ids.append(row["id"])
    levels.append(list(tree.top_ids))
    made = len(tree.top_ids)
    while made < folder_budget:
        parents = levels[-1]
        level: list[str] = []
        for parent in parents:
            for index in range(rng.randint(3, 12)):
                if made >= folder_budget:
                    break
                name = str(2015 + index) if len(levels) == 2 else f"{rng.choice(WORDS)} {rng.choice(WORDS)} {index}"
                row = _node(
                    rng, user_id, parent, kind="folder", name=name, now=now - timedelta(days=rng.randrange(3650))
                )
                tree.rows.append(row)
                level.append(row["id"])
                made += 1
        levels.append(level)
        if len(levels) > 4:
            break
    all_folders = [folder for level in levels[1:] for folder in level]
    tree.folders = len(all_folders)
    weights = [t[2] for t in FILE_TYPES]
    for number in range(max(0, nodes - tree.folders - 1)):
        extension, media_type, _, median = rng.choices(FILE_TYPES, weights)[0]
        words = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
        if number < RARE_COUNT:
            words = f"{RARE_WORD}-{rng.choice(WORDS)}"
        name = f"{words}-{rng.randrange(2015, 2025)}-{number:06d}.{extension}"
        row = _node(rng, user_id, rng.choice(all_folders), kind="file", name=name, now=now)
        uploaded = now - timedelta(seconds=rng.randrange(2 * 365 * 86400))
        row.update(
            size=max(1, int(rng.lognormvariate(math.log(median), 1.0))),
            media_type=media_type,
            sha256=f"{rng.getrandbits(256):064x}",
            created_at=uploaded,
            modified_at=uploaded - timedelta(seconds=rng.randrange(8 * 365 * 86400)),
            uploaded_at=uploaded,
            starred=rng.random() < 0.005,
        )
        if rng.random() < 0.03:
            row["properties"] = {"camera": rng.choice(["X100V", "EOS R6", "Pixel 8"]), "rating": str(rng.randint(1, 5))}
        if rng.random() < 0.02:
            row.update(trashed_at=now - timedelta(days=rng.randrange(30)), trash_root_id=row["id"])
        tree.rows.append(row)
        tree.files += 1
    return tree


# --- loading --------------------------------------------------------------------------------------


async def postgres_execute(settings: Settings, sql: str, *args: Any) -> list[Any]:
    """One statement on its own connection, outside a transaction (VACUUM needs that)."""
    dsn = settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn, server_settings={"search_path": f'"{settings.database_schema}", public'})
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def load(db: Database, settings: Settings, trees: list[Tree], now: datetime) -> float:
    started = time.perf_counter()
    trigram_definition = None
    if not db.is_sqlite:
        found = await postgres_execute(
            settings,
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            settings.database_schema,
            TRIGRAM_INDEX,
        )
        if found:
            trigram_definition = found[0]["indexdef"]
            await postgres_execute(settings, f"DROP INDEX {TRIGRAM_INDEX}")
    users = [
        {
            "id": tree.user_id,
            "email": f"user{index}@bench.example",
            "display_name": f"user {index}",
            "password_hash": "x",
            "role": "user",
            "created_at": now,
            "updated_at": now,
        }
        for index, tree in enumerate(trees)
    ]
    async with db.transaction() as session:
        await session.execute(insert(User), users)
        for tree in trees:
            for start in range(0, len(tree.rows), BATCH):
                await session.execute(insert(Node.__table__), tree.rows[start : start + BATCH])
    if trigram_definition is not None:
        await postgres_execute(settings, trigram_definition)
    if not db.is_sqlite:
        await postgres_execute(settings, "VACUUM ANALYZE nodes")
    return time.perf_counter() - started


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    median_ms: float
    fastest_ms: float
    items: int
    more: bool
    plan: str = ""


async def measure(call: Callable[[], Awaitable[NodePage]], repeat: int) -> tuple[list[float], NodePage]:
    page = await call()
    await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = await call()
        times.append((time.perf_counter() - started) * 1000)
    return times, page


async def explain(db: Database, statement: str, parameters: Any) -> str:
    async with db.read_engine.connect() as connection:
        if db.is_sqlite:
            rows = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            return "\n".join(f"    {row[-1]}" for row in rows)
        rows = (await connection.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
        return "\n".join(f"    {row[0]}" for row in rows)


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="stowage-bench-search-"))
    env = {"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_FORMAT": "json"}
    if args.backend == "postgresql":
        env["STOWAGE_DATABASE_URL"] = args.postgres_url
        env["STOWAGE_DATABASE_SCHEMA"] = f"bench_{secrets.token_hex(4)}"
        env["STOWAGE_DATABASE_STATEMENT_TIMEOUT"] = "600"
    settings = load_settings(env)
    db = Database(settings)
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    try:
        await migrate.upgrade(db)
        trees = [build_tree(rng, str(uuid.uuid4()), args.nodes, now)]
        others = 4 if args.other_nodes else 0
        trees += [build_tree(rng, str(uuid.uuid4()), args.other_nodes // others, now) for _ in range(others)]
        me = trees[0]
        print(
            f"backend {args.backend}: measured user {len(me.rows)} nodes ({me.folders} folders, {me.files} files), "
            f"{sum(len(t.rows) for t in trees[1:])} nodes of {others} other users"
        )
        seconds = await load(db, settings, trees, now)
        print(f"loaded in {seconds:.1f} s")
        if db.is_sqlite:
            size = sum(p.stat().st_size for p in data_dir.glob("stowage.db*"))  # noqa: ASYNC240 - once, at setup
            print(f"database file {size / MIB:.0f} MiB")

        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            if "FROM nodes" in statement:
                captured.append((statement, parameters))

        event.listen(db.read_engine.sync_engine, "before_cursor_execute", capture)
        files = FileServices.build(FileDeps(settings=settings, database=db, store=LocalBlobStore(data_dir)))
        principal = Principal(
            user_id=me.user_id,
            role=Role.USER,
            scopes=frozenset({Scope.READ}),
            kind=CredentialKind.SESSION,
            credential_id="bench",
        )
        search = files.search
        photos = me.top_ids[0]
        async with db.session() as session:  # a cursor deep into "recent": after the 10000th newest file
            deep_row = (
                await session.execute(
                    select(Node.uploaded_at, Node.id)
                    .where(Node.owner_id == me.user_id, Node.uploaded_at.is_not(None), Node.trashed_at.is_(None))
                    .order_by(Node.uploaded_at.desc(), Node.id.desc())
                    .offset(min(10_000, me.files // 2))
                    .limit(1)
                )
            ).one()
        deep_cursor = encode_cursor([deep_row[0].isoformat(), deep_row[1]])
        common_first = await search.search(principal, SearchQuery(text="2019"), cursor=None, limit=100)

        def searching(cursor: str | None = None, **criteria: Any) -> Callable[[], Awaitable[NodePage]]:
            return lambda: search.search(principal, SearchQuery(**criteria), cursor=cursor, limit=100)

        def recent(cursor: str | None = None) -> Callable[[], Awaitable[NodePage]]:
            return lambda: search.recent(principal, cursor=cursor, limit=50)

        queries: list[tuple[str, Callable[[], Awaitable[NodePage]]]] = [
            (f"everywhere, rare name (q={RARE_WORD})", searching(text=RARE_WORD)),
            ("everywhere, common name (q=2019)", searching(text="2019")),
            ("everywhere, q=2019, page 2", searching(common_first.next_cursor, text="2019")),
            ("everywhere, very common (q=.jpg)", searching(text=".jpg")),
            ("everywhere, no text, sort=modified desc", searching(sort="modified", descending=True)),
            ("subtree (/Photos), q=2019", searching(text="2019", folder_id=photos)),
            ("subtree (root), q=sunset", searching(text="sunset", folder_id=me.root_id)),
            ("category=image, sort=size desc", searching(category="image", sort="size", descending=True)),
            ("size 1-2 MiB", searching(min_size=MIB, max_size=2 * MIB)),
            ("starred", searching(starred=True)),
            ("recent, first page", recent()),
            ("recent, after 10000 files", recent(deep_cursor)),
        ]
        results: list[Result] = []
        for name, call in queries:
            times, page = await measure(call, args.repeat)
            plan = await explain(db, *captured[-1]) if args.explain else ""
            captured.clear()
            result = Result(
                name=name,
                median_ms=statistics.median(times),
                fastest_ms=min(times),
                items=len(page.items),
                more=page.next_cursor is not None,
                plan=plan,
            )
            results.append(result)
            print(
                f"  {name:<45} median {result.median_ms:8.2f} ms   fastest {result.fastest_ms:8.2f} ms   "
                f"{result.items:>3} items{'+' if result.more else ' '}"
            )
            if plan:
                print(plan)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "backend": args.backend,
                        "nodes": len(me.rows),
                        "other_nodes": sum(len(t.rows) for t in trees[1:]),
                        "repeat": args.repeat,
                        "load_seconds": seconds,
                        "results": [r.__dict__ for r in results],
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        await db.dispose()
        if args.keep:
            print(f"kept: {data_dir}" + (f", schema {settings.database_schema}" if settings.database_schema else ""))
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            if settings.database_schema:
                await postgres_execute(settings, f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="nodes of the measured user (default 100000)")
    parser.add_argument("--other-nodes", type=int, help="nodes of four other users together (default nodes/2)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="server for --backend postgresql")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the tree (default 1)")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and PostgreSQL schema")
    args = parser.parse_args()
    if args.other_nodes is None:
        args.other_nodes = args.nodes // 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

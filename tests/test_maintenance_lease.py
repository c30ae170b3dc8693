"""The maintenance lease (``maintenance.lease``) and what it guards, on SQLite and PostgreSQL.

Handles with different holders stand for different nodes (each has its own ``Database`` where the test
is about racing connections). Expiry is tested with injected clocks, the renewal while work runs with a
real lease of one second. ``test_multi_node.py`` kills a real node holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts_helpers import database
from conftest import make_settings
from stowage.blobs import LocalBlobStore
from stowage.config import ConfigError, Settings
from stowage.db import migrate
from stowage.db.engine import Database
from stowage.files.services import FileDeps, FileServices
from stowage.maintenance import runs
from stowage.maintenance.housekeeping import checked_run, housekeeping_if_due, maintenance_lease
from stowage.maintenance.lease import MAINTENANCE_LEASE, Lease, LeaseLost, run_holding
from stowage.policy import CredentialKind, Principal, Role, Scope
from support.server import clean_environ, stowage_command

ADMIN = Principal(
    user_id="admin", role=Role.ADMIN, scopes=frozenset(Scope), kind=CredentialKind.SESSION, credential_id="test"
)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with database(settings) as opened:
        await migrate.upgrade(opened)
        yield opened


def clock_at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def test_one_holder_at_a_time_until_released(db: Database) -> None:
    node_a = Lease(db, "test", node="node-a", seconds=30)
    node_b = Lease(db, "test", node="node-b", seconds=30)

    assert await node_b.current() is None  # never taken
    assert await node_a.acquire()
    assert not await node_b.acquire()
    held = await node_b.current()
    assert held is not None
    assert (held.node, held.holder) == ("node-a", node_a.holder)
    assert await node_a.acquire()  # the holder may take it again (extends it)
    assert await node_a.renew()
    assert not await node_b.renew()  # renewing is for the holder only

    await node_a.release()

    assert await node_b.current() is None
    assert await node_b.acquire()
    assert not await node_a.acquire()
    assert not await node_a.renew()


async def test_a_lapsed_lease_is_taken_over_and_its_old_holder_cannot_renew_it(db: Database) -> None:
    start = datetime.now(UTC)
    dead = Lease(db, "test", node="dead", seconds=10, clock=clock_at(start))
    assert await dead.acquire()
    before = Lease(db, "test", node="other", seconds=10, clock=clock_at(start + timedelta(seconds=9)))
    after = Lease(db, "test", node="other", seconds=10, clock=clock_at(start + timedelta(seconds=10)))

    assert not await before.acquire()  # one second before the expiry
    assert await after.acquire()  # at the expiry

    late = Lease(db, "test", node="dead", seconds=10, clock=clock_at(start + timedelta(seconds=11)))
    late.holder = dead.holder  # the same process, waking up after a stall
    assert not await late.renew()
    await late.release()  # changes nothing: it is not the holder's any more
    held = await after.current()
    assert held is not None
    assert held.holder == after.holder


async def test_a_lapsed_lease_nobody_took_is_not_revived_by_its_old_holder(db: Database) -> None:
    start = datetime.now(UTC)
    holder = Lease(db, "test", node="slow", seconds=5, clock=clock_at(start))
    assert await holder.acquire()
    holder._clock = clock_at(start + timedelta(seconds=6))

    assert not await holder.renew()


async def test_racing_nodes_one_wins(settings: Settings) -> None:
    """Eight nodes (each its own engines and connections) ask for a lease never taken, then for a free one."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(database(settings)) for _ in range(8)]
        await migrate.upgrade(nodes[0])
        for name in ("fresh", "fresh-again"):
            leases = [Lease(node_db, name, node=f"node-{i}", seconds=30) for i, node_db in enumerate(nodes)]
            won = await asyncio.gather(*(lease.acquire() for lease in leases))
            assert sum(won) == 1, won
            await leases[won.index(True)].release()
        leases = [Lease(node_db, "fresh", node=f"node-{i}", seconds=30) for i, node_db in enumerate(nodes)]
        won = await asyncio.gather(*(lease.acquire() for lease in leases))
        assert sum(won) == 1, won  # the existing, released row: the conditional UPDATE decides


async def test_work_longer_than_the_lease_keeps_it_renewed_then_releases_it(db: Database) -> None:
    holder = Lease(db, "test", node="node-a", seconds=1)
    other = Lease(db, "test", node="node-b", seconds=1)
    assert await holder.acquire()
    seen: list[bool] = []

    async def work() -> str:
        for _ in range(4):  # 2 s: twice the lease's lifetime
            await asyncio.sleep(0.5)
            seen.append(await other.acquire())
        return "done"

    assert await run_holding(holder, work) == "done"

    assert seen == [False, False, False, False]
    assert await other.current() is None  # released at the end
    assert await other.acquire()


async def test_work_is_cancelled_when_the_lease_is_lost(db: Database) -> None:
    holder = Lease(db, "test", node="node-a", seconds=1.5)
    assert await holder.acquire()
    # Another node takes over as if the lease had lapsed (its clock is past the expiry).
    thief = Lease(db, "test", node="node-b", seconds=30, clock=lambda: datetime.now(UTC) + timedelta(seconds=5))
    cancelled = asyncio.Event()

    async def work() -> None:
        assert await thief.acquire()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLost, match="node-a"):
        await run_holding(holder, work)

    assert cancelled.is_set()
    held = await thief.current()
    assert held is not None
    assert held.node == "node-b"  # the loser's release left the winner's lease alone


async def test_a_failing_renewal_keeps_the_work_until_the_lease_would_lapse(db: Database) -> None:
    """A database outage during the work: renewals fail, the work goes on while the lease still stands,
    and is cancelled once it would have lapsed (another node may be taking over)."""
    holder = Lease(db, "test", node="node-a", seconds=1.5)
    assert await holder.acquire()
    renewals: list[float] = []

    async def failing_renew() -> bool:
        renewals.append(asyncio.get_running_loop().time())
        raise ConnectionError("database unreachable")

    holder.renew = failing_renew  # type: ignore[method-assign]
    started = asyncio.get_running_loop().time()

    with pytest.raises(LeaseLost):
        await run_holding(holder, lambda: asyncio.sleep(30))

    assert len(renewals) >= 2  # it kept trying while the lease stood
    assert asyncio.get_running_loop().time() - started >= 1.5  # and gave up only once it had lapsed


# --- housekeeping and the CLI's checks under the lease -------------------------------------------------


@contextlib.asynccontextmanager
async def file_services(settings: Settings) -> AsyncIterator[FileServices]:
    async with database(settings) as opened:
        await migrate.upgrade(opened)
        store = LocalBlobStore(settings.data_dir.resolve())
        yield FileServices.build(FileDeps(settings=settings, database=opened, store=store))


async def test_housekeeping_runs_only_when_due_and_only_with_the_lease(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, node_name="node-a", housekeeping_interval_seconds=3600)
    async with file_services(settings) as files:
        db = files.deps.database
        ours = maintenance_lease(db, settings)
        other = Lease(db, MAINTENANCE_LEASE, node="node-b", seconds=30)
        assert await other.acquire()

        assert await housekeeping_if_due(files, settings, ours) is None  # due, but node-b holds the lease
        assert (await runs.last_runs(db, ADMIN)).gc is None

        await other.release()
        report = await housekeeping_if_due(files, settings, ours)

        assert report is not None
        recorded = (await runs.last_runs(db, ADMIN)).gc
        assert recorded is not None
        assert (recorded.trigger, recorded.node) == ("housekeeping", "node-a")
        assert await other.current() is None  # released after the pass
        # Not due again within the interval, whoever asks.
        assert await housekeeping_if_due(files, settings, other) is None
        assert len((await runs.last_runs(db, ADMIN)).recent) == 1


async def test_a_pass_is_due_again_after_the_interval(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, node_name="node-a", housekeeping_interval_seconds=1)
    async with file_services(settings) as files:
        lease = maintenance_lease(files.deps.database, settings)
        assert await housekeeping_if_due(files, settings, lease) is not None
        assert await housekeeping_if_due(files, settings, lease) is None
        await asyncio.sleep(1.05)
        assert await housekeeping_if_due(files, settings, lease) is not None
        assert len((await runs.last_runs(files.deps.database, ADMIN)).recent) == 2


async def test_a_cli_check_waits_for_a_running_pass(settings_env: dict[str, str], caplog: Any) -> None:
    settings = make_settings(settings_env, node_name="node-a", maintenance_lease_seconds=1)
    async with file_services(settings) as files:
        db = files.deps.database
        busy = Lease(db, MAINTENANCE_LEASE, node="node-b", seconds=30)
        assert await busy.acquire()
        check = asyncio.create_task(
            checked_run(db, files.deps.store, kind="gc", rehash=False, repair=True, grace_seconds=3600)
        )
        await asyncio.sleep(1.0)
        assert not check.done()  # waiting for node-b's pass
        assert (await runs.last_runs(db, ADMIN)).gc is None

        await busy.release()
        await asyncio.wait_for(check, timeout=10)

        recorded = (await runs.last_runs(db, ADMIN)).gc
        assert recorded is not None
        assert (recorded.trigger, recorded.node) == ("cli", "node-a/cli")
        assert await busy.current() is None


async def test_a_cli_check_takes_over_from_a_dead_holder(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, node_name="node-a", maintenance_lease_seconds=1)
    async with file_services(settings) as files:
        db = files.deps.database
        dead = Lease(db, MAINTENANCE_LEASE, node="node-b", seconds=1.5)  # never renewed: its node died
        assert await dead.acquire()

        await asyncio.wait_for(
            checked_run(db, files.deps.store, kind="fsck", rehash=True, repair=False, grace_seconds=3600), timeout=10
        )

        recorded = (await runs.last_runs(db, ADMIN)).fsck
        assert recorded is not None
        assert recorded.node == "node-a/cli"


# --- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("node_name", "two words", "STOWAGE_NODE_NAME (node_name): must be 1-100 of"),
        ("node_name", "n" * 101, "STOWAGE_NODE_NAME (node_name)"),
        ("housekeeping_interval_seconds", "0", "STOWAGE_HOUSEKEEPING_INTERVAL_SECONDS"),
        ("housekeeping_interval_seconds", str(8 * 86400), "must be 1 s to 7 days"),
        ("maintenance_lease_seconds", "0.5", "STOWAGE_MAINTENANCE_LEASE_SECONDS (maintenance_lease_seconds)"),
        ("maintenance_lease_seconds", "3601", "between 1 and 3600 seconds"),
    ],
)
def test_bad_node_settings_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_settings({}, **{name: value})


def test_the_node_name_defaults_to_host_and_port() -> None:
    import socket

    assert make_settings({}, port="8123").effective_node_name == f"{socket.gethostname()}:8123"
    assert make_settings({}, node_name="node-a").effective_node_name == "node-a"


async def test_stowage_gc_started_beside_a_running_pass_says_whom_it_waits_for_then_runs(
    settings_env: dict[str, str],
) -> None:
    """The real command, as an administrator would start it while the servers run."""
    settings = make_settings(settings_env)
    async with file_services(settings) as files:
        busy = Lease(files.deps.database, MAINTENANCE_LEASE, node="node-b", seconds=30)
        assert await busy.acquire()
        env = clean_environ({**settings_env, "STOWAGE_NODE_NAME": "node-a", "STOWAGE_LOG_FORMAT": "json"})
        command = await asyncio.create_subprocess_exec(
            *stowage_command(), "gc", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            waiting = b""
            async with asyncio.timeout(30):
                while b"waiting_for_maintenance_lease" not in waiting:
                    line = await command.stderr.readline()  # type: ignore[union-attr]
                    assert line, "stowage gc ended without waiting"
                    waiting += line
            assert b"node-b" in waiting
            assert command.returncode is None  # still waiting
            assert (await runs.last_runs(files.deps.database, ADMIN)).gc is None

            await busy.release()
            out, _ = await asyncio.wait_for(command.communicate(), timeout=30)
        finally:
            if command.returncode is None:
                command.kill()
                await command.wait()
        assert command.returncode == 0, out
        recorded = (await runs.last_runs(files.deps.database, ADMIN)).gc
        assert recorded is not None
        assert (recorded.trigger, recorded.node) == ("cli", "node-a/cli")


async def test_the_admin_view_names_the_node_running_a_job_now(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env)
    async with file_services(settings) as files:
        db = files.deps.database
        assert (await runs.last_runs(db, ADMIN)).running is None
        busy = Lease(db, MAINTENANCE_LEASE, node="node-b", seconds=30)
        assert await busy.acquire()

        running = (await runs.last_runs(db, ADMIN)).running

        assert running is not None
        assert running.node == "node-b"
        assert running.since <= datetime.now(UTC) < running.lease_expires_at
        await busy.release()
        assert (await runs.last_runs(db, ADMIN)).running is None

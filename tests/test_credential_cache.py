"""The per-worker credential cache: a bearer check is remembered for at most ``principal_cache_seconds``,
and every committed revocation ends what every worker of this machine remembers, through a counter in
shared memory (``db.epoch.SharedEpoch``).

A cache that answers fast but lets a revoked token through is a security bug, so the promise is
checked where it matters: over HTTP (revoke, log out, disable, change the password, delete, demote —
the very next request with the old credential fails), across real processes (a forked child's bump,
two Granian workers), and at the unit level (lifetime, the credential's own expiry, the epoch). The
control tests show the cache is really in use: a change made behind the services' back — which bumps
nothing — is still served from the cache, and only its lifetime bounds it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from accounts_helpers import (
    LOGOUT,
    ME,
    NEW_PASSWORD,
    PASSWORD,
    auth,
    create_pat,
    create_user_directly,
    database,
    db_transaction,
    login,
    make_admin,
    open_client,
    signup,
)
from conftest import make_settings

# The cache is a private module of the account services (not re-exported): it is the unit under test.
from stowage.accounts.services import _credential_cache
from stowage.accounts.services._credential_cache import CredentialCache
from stowage.config import Settings
from stowage.db.epoch import SharedEpoch
from stowage.db.tables import ApiKey
from stowage.errors import Unauthenticated
from stowage.policy import CredentialKind, Principal, Role, Scope
from support.server import ServerProcess, running_server, wait_until

# Lists the caller's tokens for the principal's user id and reads nothing else about the account, so a
# remembered principal is enough to answer it: a 200 here after a revocation would be the cache's doing.
PROBE = f"{ME}/tokens"
USERS = "/api/v1/admin/users"
LIFETIME = 1.0  # the default principal_cache_seconds, and the most it may be


async def probe(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get(PROBE, headers=auth(token))).status_code


async def cached(client: httpx.AsyncClient, *tokens: str) -> None:
    """Use each credential once, successfully: from now on this worker remembers its check."""
    for token in tokens:
        assert await probe(client, token) == 200


# --- every revocation ends the remembered check at once (in-process, both engines) ------------------------


async def test_revoking_a_personal_token_ends_it_at_the_next_request(client: httpx.AsyncClient) -> None:
    pair = await signup(client, "pat@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    await cached(client, pat["token"])

    revoked = await client.delete(f"{ME}/tokens/{pat['details']['id']}", headers=auth(pair["access_token"]))

    assert revoked.status_code == 204, revoked.text
    assert await probe(client, pat["token"]) == 401
    assert await probe(client, pair["access_token"]) == 200  # the session that revoked it goes on


async def test_logging_out_ends_the_access_token_at_the_next_request(client: httpx.AsyncClient) -> None:
    pair = await signup(client, "leaving@example.com")
    other = await login(client, "leaving@example.com")
    await cached(client, pair["access_token"], other["access_token"])

    logged_out = await client.post(LOGOUT, headers=auth(pair["access_token"]))

    assert logged_out.status_code == 204, logged_out.text
    assert await probe(client, pair["access_token"]) == 401
    assert await probe(client, other["access_token"]) == 200  # another device's session is not this one


async def test_disabling_a_user_ends_their_credentials_at_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await make_admin(client, settings, "root@example.com")
    user = await signup(client, "dora@example.com")
    pat = await create_pat(client, user["access_token"], ["read"])
    await cached(client, user["access_token"], pat["token"], admin["access_token"])

    disabled = await client.patch(
        f"{USERS}/{user['user']['id']}", json={"disabled": True}, headers=auth(admin["access_token"])
    )

    assert disabled.status_code == 200, disabled.text
    assert await probe(client, user["access_token"]) == 401
    assert await probe(client, pat["token"]) == 401
    assert await probe(client, admin["access_token"]) == 200


async def test_changing_the_password_ends_the_other_sessions_at_the_next_request(client: httpx.AsyncClient) -> None:
    current = await signup(client, "bella@example.com")
    other = await login(client, "bella@example.com")
    await cached(client, current["access_token"], other["access_token"])

    changed = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=auth(current["access_token"]),
    )

    assert changed.status_code == 204, changed.text
    assert await probe(client, other["access_token"]) == 401
    assert await probe(client, current["access_token"]) == 200  # the session that changed it goes on


async def test_deleting_the_account_ends_its_credentials_at_the_next_request(client: httpx.AsyncClient) -> None:
    pair = await signup(client, "gone@example.com")
    other = await login(client, "gone@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    await cached(client, pair["access_token"], other["access_token"], pat["token"])

    deleted = await client.request("DELETE", ME, json={"password": PASSWORD}, headers=auth(pair["access_token"]))

    assert deleted.status_code == 204, deleted.text
    for token in (pair["access_token"], other["access_token"], pat["token"]):
        assert await probe(client, token) == 401


async def test_demoting_an_administrator_takes_the_admin_scope_away_at_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A role is part of the remembered principal: demotion must not leave an admin for a second more."""
    root = await make_admin(client, settings, "root@example.com")
    deputy = await make_admin(client, settings, "deputy@example.com")
    deputy_headers = auth(deputy["access_token"])
    assert (await client.get(USERS, headers=deputy_headers)).status_code == 200

    demoted = await client.patch(
        f"{USERS}/{deputy['user']['id']}", json={"role": "user"}, headers=auth(root["access_token"])
    )

    assert demoted.status_code == 200, demoted.text
    assert (await client.get(USERS, headers=deputy_headers)).status_code == 403
    assert await probe(client, deputy["access_token"]) == 200  # still signed in, as a user


# --- the controls: the cache is really used, and its lifetime bounds what it cannot be told ---------------


async def _revoke_behind_the_services_back(settings: Settings, key_id: str) -> None:
    """Revoke a token with a plain database write from another engine: no service, so no epoch bump."""
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))


async def _accepted_until_refused(client: httpx.AsyncClient, token: str, *, since: float, bound: float) -> None:
    """Poll until ``token`` is refused; fail if it is accepted by a request sent ``bound`` seconds or more
    after ``since`` (a correctness bound: by then every remembered check has expired)."""
    seen: list[tuple[float, int]] = []
    while True:
        sent = time.monotonic()
        status = await probe(client, token)
        seen.append((round(sent - since, 3), status))
        if status == 401:
            return
        assert status == 200, seen
        assert sent < since + bound, f"still accepted {bound}s after the revocation: {seen}"
        await asyncio.sleep(0.02)


async def test_a_change_nobody_announced_is_served_from_the_cache_for_at_most_its_lifetime(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The control for the tests above: a revocation that bumps nothing (another machine's worker would
    be in this position) is not seen at once — the check really is remembered — but no request sent
    once ``principal_cache_seconds`` has passed is let through."""
    assert settings.principal_cache_seconds == LIFETIME  # the default, under which the tests above run
    pair = await signup(client, "control@example.com")
    # Whether the check was remembered can only be judged by a probe sent within the lifetime: on a
    # loaded machine the revocation alone may take longer, and then the attempt is repeated.
    judged: list[float] = []
    for _attempt in range(5):
        pat = await create_pat(client, pair["access_token"], ["read"])
        await cached(client, pat["token"])
        remembered_at = time.monotonic()

        await _revoke_behind_the_services_back(settings, pat["details"]["id"])

        sent = time.monotonic()
        status = await probe(client, pat["token"])
        if sent - remembered_at >= LIFETIME * 0.8:
            judged.append(round(sent - remembered_at, 3))
            continue  # too late to tell a remembered check from an expired one
        assert status == 200, "the check was not remembered: the other tests prove nothing"
        await _accepted_until_refused(client, pat["token"], since=remembered_at, bound=LIFETIME)
        return
    pytest.fail(f"the revocation never finished within the cache lifetime (probes sent after {judged} s)")


async def test_a_bump_by_another_process_ends_every_remembered_check(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """What the CLI (``stowage user disable``) or any other process on this machine does after its
    commit: a bump of the shared counter, and this worker's next request checks the database again."""
    pair = await signup(client, "cli@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    await cached(client, pat["token"])

    async with db_transaction(settings) as session:  # commits, then bumps the shared counter
        await session.execute(
            update(ApiKey).where(ApiKey.id == pat["details"]["id"]).values(revoked_at=datetime.now(UTC))
        )

    assert await probe(client, pat["token"]) == 401


async def test_a_zero_cache_lifetime_checks_the_database_on_every_request(settings_env: dict[str, str]) -> None:
    """``principal_cache_seconds = 0`` turns the cache off: even an unannounced revocation is seen at once."""
    settings = make_settings(settings_env, principal_cache_seconds=0)
    async with open_client(settings) as client:
        pair = await signup(client, "nocache@example.com")
        pat = await create_pat(client, pair["access_token"], ["read"])
        await cached(client, pat["token"])

        await _revoke_behind_the_services_back(settings, pat["details"]["id"])

        assert await probe(client, pat["token"]) == 401


# --- CredentialCache (unit) ---------------------------------------------------------------------------------


class FakeClock:
    """Both clocks the cache reads, moved by hand (so lifetimes are tested without waiting)."""

    def __init__(self) -> None:
        self.now_monotonic = 1000.0
        self.now_wall = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now_monotonic

    def time(self) -> float:
        return self.now_wall

    def advance(self, seconds: float) -> None:
        self.now_monotonic += seconds
        self.now_wall += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_credential_cache, "time", fake)
    return fake


ALICE = Principal(
    user_id="alice",
    role=Role.USER,
    scopes=frozenset({Scope.READ}),
    kind=CredentialKind.PERSONAL_TOKEN,
    credential_id="key-1",
)


def _epoch(tmp_path: Path) -> SharedEpoch:
    return SharedEpoch(tmp_path / "run" / "credentials.epoch")


def test_an_entry_is_used_within_its_lifetime_and_not_after(tmp_path: Path, clock: FakeClock) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    cache.put("token", ALICE, epoch=cache.epoch.value(), valid_until=float("inf"))

    clock.advance(0.999)
    assert cache.get("token") == ALICE
    clock.advance(0.002)
    assert cache.get("token") is None
    assert cache.get("token") is None  # and it stays gone (it was dropped, not just skipped)


def test_an_entry_is_not_used_past_the_credentials_own_expiry(tmp_path: Path, clock: FakeClock) -> None:
    """A token that expires in half a second must not be accepted for the cache's full second."""
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    cache.put("token", ALICE, epoch=cache.epoch.value(), valid_until=clock.time() + 0.5)
    cache.put("expired", ALICE, epoch=cache.epoch.value(), valid_until=clock.time())

    assert cache.get("token") == ALICE
    assert cache.get("expired") is None
    clock.advance(0.5)
    assert cache.get("token") is None


def test_an_entry_is_not_used_once_the_epoch_changed(tmp_path: Path, clock: FakeClock) -> None:
    """A bump by anyone — here another process's view of the same counter file — ends every entry."""
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    cache.put("token", ALICE, epoch=cache.epoch.value(), valid_until=float("inf"))
    assert cache.get("token") == ALICE

    _epoch(tmp_path).bump()

    assert cache.get("token") is None


def test_a_check_that_began_before_a_revocation_is_not_remembered_as_current(tmp_path: Path, clock: FakeClock) -> None:
    """The race the epoch is read early for: a check reads the database, a revocation commits and bumps,
    then the check stores its (now outdated) answer. That answer must never be used."""
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    epoch_before_the_check = cache.epoch.value()
    _epoch(tmp_path).bump()  # the revocation commits while the check is under way

    cache.put("token", ALICE, epoch=epoch_before_the_check, valid_until=float("inf"))

    assert cache.get("token") is None


def test_revoked_forgets_here_and_tells_every_other_cache(tmp_path: Path, clock: FakeClock) -> None:
    here = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    elsewhere = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    for cache in (here, elsewhere):
        cache.put("token", ALICE, epoch=cache.epoch.value(), valid_until=float("inf"))

    here.revoked()

    assert here.get("token") is None
    assert elsewhere.get("token") is None


async def test_the_lifetime_counts_from_when_the_check_began(tmp_path: Path, clock: FakeClock) -> None:
    """Another node's revocation (no counter here tells of it) must be honoured within the lifetime of
    the commit: an answer that took 0.6 s to come is as old as the question, and goes 0.4 s later."""
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)

    async def slow_check() -> tuple[Principal, float]:
        clock.advance(0.6)  # the database read happened at the start; the answer arrives late
        return ALICE, float("inf")

    assert await cache.check_and_remember("token", slow_check) == ALICE
    clock.advance(0.399)
    assert cache.get("token") == ALICE
    clock.advance(0.002)
    assert cache.get("token") is None


def test_a_zero_lifetime_disables_the_cache(tmp_path: Path, clock: FakeClock) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=0)

    cache.put("token", ALICE, epoch=cache.epoch.value(), valid_until=float("inf"))

    assert cache.get("token") is None


# --- concurrent misses share one check ----------------------------------------------------------------------


class HeldCheck:
    """A database check that waits until released, counting how often it was run."""

    def __init__(self, answer: Principal | Exception = ALICE) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.answer = answer

    async def __call__(self) -> tuple[Principal, float]:
        self.runs += 1
        await self.release.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer, float("inf")


async def _settle() -> None:
    """Let every started task run up to its first real wait (no I/O is involved: a few turns suffice)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_concurrent_misses_for_one_credential_share_one_check(tmp_path: Path) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    check = HeldCheck()
    waiting = [asyncio.create_task(cache.check_and_remember("token", check)) for _ in range(20)]
    await _settle()
    check.release.set()

    assert await asyncio.gather(*waiting) == [ALICE] * 20
    assert check.runs == 1
    assert cache.get("token") == ALICE


async def test_a_shared_check_that_fails_fails_every_request_waiting_on_it(tmp_path: Path) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    check = HeldCheck(Unauthenticated("This personal access token has been revoked."))
    waiting = [asyncio.create_task(cache.check_and_remember("token", check)) for _ in range(5)]
    await _settle()
    check.release.set()

    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(o) for o in outcomes] == [Unauthenticated] * 5
    assert check.runs == 1
    assert cache.get("token") is None


async def test_a_request_after_a_revocation_does_not_join_a_check_that_began_before_it(tmp_path: Path) -> None:
    """The check under way may have read the credential before the revocation committed: a request that
    arrives after the bump runs a check of its own."""
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    before = HeldCheck()
    first = asyncio.create_task(cache.check_and_remember("token", before))
    await _settle()

    cache.revoked()
    after = HeldCheck(Unauthenticated("This personal access token has been revoked."))
    second = asyncio.create_task(cache.check_and_remember("token", after))
    await _settle()
    before.release.set()
    after.release.set()

    assert await first == ALICE  # concurrent with the revocation: either answer is right
    with pytest.raises(Unauthenticated):
        await second
    assert (before.runs, after.runs) == (1, 1)
    assert cache.get("token") is None  # the early answer was not remembered as current


async def test_when_the_request_running_a_shared_check_is_cancelled_the_others_check_themselves(
    tmp_path: Path,
) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=1.0)
    abandoned = HeldCheck()
    leader = asyncio.create_task(cache.check_and_remember("token", abandoned))
    await _settle()
    retried = HeldCheck()
    followers = [asyncio.create_task(cache.check_and_remember("token", retried)) for _ in range(3)]
    await _settle()

    leader.cancel()
    await _settle()
    retried.release.set()

    assert await asyncio.gather(*followers) == [ALICE] * 3
    assert leader.cancelled()
    assert abandoned.runs == 1
    assert retried.runs == 1  # the followers shared one new check among themselves


async def test_with_the_cache_off_every_request_checks_for_itself(tmp_path: Path) -> None:
    cache = CredentialCache(_epoch(tmp_path), lifetime=0)
    check = HeldCheck()
    waiting = [asyncio.create_task(cache.check_and_remember("token", check)) for _ in range(4)]
    await _settle()
    check.release.set()

    assert await asyncio.gather(*waiting) == [ALICE] * 4
    assert check.runs == 4


# --- SharedEpoch across instances and processes ------------------------------------------------------------


def test_two_instances_on_one_file_see_each_others_bumps(tmp_path: Path) -> None:
    """Two workers each map the file themselves; a bump by either is read by both."""
    first, second = _epoch(tmp_path), _epoch(tmp_path)
    try:
        start = first.value()
        assert second.value() == start

        first.bump()
        assert second.value() == start + 1
        second.bump()
        second.bump()
        assert first.value() == start + 3
    finally:
        first.close()
        second.close()


def _bump_in_child(epoch: SharedEpoch, times: int) -> None:
    for _ in range(times):
        epoch.bump()
    epoch.close()


def _fork_context() -> Any:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform cannot fork")
    return multiprocessing.get_context("fork")


def test_a_forked_childs_bump_is_seen_by_the_parent(tmp_path: Path) -> None:
    """Granian forks its workers from a parent that may already have mapped the counter: the child must
    count in the same file, and the parent must see it."""
    epoch = _epoch(tmp_path)
    try:
        start = epoch.value()  # mapped in the parent before the fork
        child = _fork_context().Process(target=_bump_in_child, args=(epoch, 1))
        child.start()
        child.join(timeout=30)

        assert child.exitcode == 0
        assert epoch.value() == start + 1
        assert child.pid != os.getpid()
    finally:
        epoch.close()


def test_bumps_from_several_processes_are_never_lost(tmp_path: Path) -> None:
    """Read-increment-write under a lock: concurrent bumps from four processes all count. (A lost bump
    could only ever hide a revocation if the counter came back to a value some entry was stored under.)"""
    epoch = _epoch(tmp_path)
    try:
        start = epoch.value()
        context = _fork_context()
        children = [context.Process(target=_bump_in_child, args=(_epoch(tmp_path), 250)) for _ in range(4)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=60)

        assert [child.exitcode for child in children] == [0, 0, 0, 0]
        assert epoch.value() == start + 1000
    finally:
        epoch.close()


# --- two real worker processes ---------------------------------------------------------------------------------


def _answers_per_worker(log_dir: Path) -> dict[str, dict[int, int]]:
    """Per worker log file (``stowage.<pid>.log``): how many probe requests it answered, by status."""
    counts: dict[str, dict[int, int]] = {}
    for path in sorted(log_dir.glob("stowage.*.log")):
        by_status: dict[int, int] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("event") == "request" and record.get("path") == PROBE:
                by_status[record["status"]] = by_status.get(record["status"], 0) + 1
        counts[path.name] = by_status
    return counts


def _total(counts: dict[str, dict[int, int]]) -> int:
    return sum(sum(by_status.values()) for by_status in counts.values())


class Workers:
    """Requests to a two-worker server, each on a fresh connection (so the kernel may pick either
    worker), with the worker that answered each one read from the per-worker access logs."""

    def __init__(self, server: ServerProcess, log_dir: Path) -> None:
        self.server = server
        self.log_dir = log_dir

    async def round(self, token: str, count: int) -> tuple[list[int], dict[str, dict[int, int]]]:
        """Send ``count`` probes; their statuses, and per worker the statuses it answered in this round."""
        before = _answers_per_worker(self.log_dir)
        statuses = []
        for _ in range(count):
            async with httpx.AsyncClient(base_url=self.server.base_url, timeout=10) as fresh:
                response = await fresh.get(PROBE, headers={**auth(token), "Connection": "close"})
            statuses.append(response.status_code)
        expected = _total(before) + count
        await wait_until(lambda: _total(_answers_per_worker(self.log_dir)) >= expected)  # access lines flushed
        after = _answers_per_worker(self.log_dir)
        served: dict[str, dict[int, int]] = {}
        for name, by_status in after.items():
            new = {s: n - before.get(name, {}).get(s, 0) for s, n in by_status.items()}
            if any(new.values()):
                served[name] = {s: n for s, n in new.items() if n}
        return statuses, served

    async def remembered_by_both(self, token: str) -> None:
        """Use ``token`` until both workers have accepted it in one round (so both remember it now)."""
        for _ in range(10):
            statuses, served = await self.round(token, 20)
            assert set(statuses) == {200}, statuses
            if len(served) == 2:
                return
        pytest.fail(f"every round landed on one worker; cannot show anything about two: {served}")

    async def refused_by_both(self, token: str) -> None:
        """From now on every request with ``token`` is refused, by whichever worker answers — and both do."""
        answered_by: set[str] = set()
        for _ in range(10):
            statuses, served = await self.round(token, 20)
            assert set(statuses) == {401}, f"accepted after the revocation was answered: {statuses}"
            answered_by |= set(served)
            if len(answered_by) == 2:
                return
        pytest.fail(f"every round landed on one worker; cannot show anything about two: {answered_by}")


@asynccontextmanager
async def two_workers(tmp_path: Path, settings_env: dict[str, str]) -> AsyncIterator[Workers]:
    log_dir = tmp_path / "logs"
    env = {
        **settings_env,
        "STOWAGE_LOG_FORMAT": "json",
        "STOWAGE_LOG_FILE": str(log_dir / "stowage.log"),
        "STOWAGE_RATE_LIMIT_AUTH_PER_IP": "1000",
    }
    async with running_server(tmp_path / "server", env, args=("--workers", "2")) as server:
        yield Workers(server, log_dir)


@pytest.mark.slow
async def test_a_revocation_reaches_both_worker_processes_at_once(tmp_path: Path, settings_env: dict[str, str]) -> None:
    """The requirement: with two workers that both remember a credential, every request after its
    revocation is refused — within the second the cache may last, and on one machine right away, since
    the worker that committed the revocation bumps the counter the other worker reads. Checked for a
    revoked personal token and for the access token of a user an administrator disables."""
    settings = make_settings(settings_env)
    async with (
        two_workers(tmp_path, settings_env) as workers,
        httpx.AsyncClient(base_url=workers.server.base_url, timeout=10) as http,
    ):
        owner = await signup(http, "owner@example.com")
        pat = await create_pat(http, owner["access_token"], ["read"])
        victim = await signup(http, "victim@example.com")
        await create_user_directly(settings, "root@example.com", role="admin")
        admin = await login(http, "root@example.com")

        await workers.remembered_by_both(pat["token"])
        revoked = await http.delete(f"{ME}/tokens/{pat['details']['id']}", headers=auth(owner["access_token"]))
        assert revoked.status_code == 204, revoked.text
        await workers.refused_by_both(pat["token"])

        await workers.remembered_by_both(victim["access_token"])
        disabled = await http.patch(
            f"{USERS}/{victim['user']['id']}", json={"disabled": True}, headers=auth(admin["access_token"])
        )
        assert disabled.status_code == 200, disabled.text
        await workers.refused_by_both(victim["access_token"])

        # The owner's own session was never revoked: still accepted by both workers.
        await workers.remembered_by_both(owner["access_token"])

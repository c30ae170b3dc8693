"""The image facts' background work, on SQLite and PostgreSQL, with a computation the test controls:
one computation per content however many ask (single flight), a bounded queue that drops what does
not fit (a later listing asks again), and a time limit that marks the content and never retries it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from conftest import make_settings
from files_helpers import children, new_account, sha256_hex, upload
from stowage.config import ConfigError
from stowage.files.facts_repository import FactsRow
from stowage.files.services import FactsService
from stowage.files.services import _facts as facts_module
from test_image_facts import facts_row, forget_facts, photo
from tus_helpers import served

FACTS = FactsRow(width=7, height=5, taken_at=None, placeholder="L00000fQfQfQfQfQfQfQfQfQfQfQ", failure=None)


class Counting:
    """A stand-in for ``stowage.images.image_facts`` that counts its calls and can be held or slowed."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def __call__(self, path: Path) -> FactsRow:
        self.calls.append(path.name)
        self.release.wait(10)
        time.sleep(self.delay)
        return FACTS


async def test_one_computation_per_content_however_many_ask(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_facts_concurrency=2)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        content = photo("2021:01:01 10:00:00")
        await upload(client, alice, alice.root_id, "a.jpg", content)
        await runtime.files.facts.idle()
        await forget_facts(settings)
        compute = Counting(delay=0.3)
        facts = FactsService(runtime.files.deps, compute=compute)
        sha = sha256_hex(content)

        facts.schedule([sha, sha])
        images = await asyncio.gather(*(facts.image_of(sha, wait=5) for _ in range(4)))
        facts.schedule([sha])
        await facts.idle()

        assert compute.calls == [sha]
        assert all(image is not None and (image.width, image.height) == (7, 5) for image in images)
        await facts.close()


async def test_a_full_queue_drops_work_that_a_later_listing_asks_for_again(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_facts_queue=1)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        contents = [photo("2021:01:01 10:00:00", seed=i) for i in range(3)]
        for index, content in enumerate(contents):
            await upload(client, alice, alice.root_id, f"{index}.jpg", content)
        await runtime.files.facts.idle()
        await forget_facts(settings)
        compute = Counting()
        compute.release.clear()  # the first computation holds the only slot until released
        facts = FactsService(runtime.files.deps, compute=compute)
        hashes = [sha256_hex(c) for c in contents]

        facts.schedule(hashes[:1])
        await asyncio.sleep(0.2)  # the drainer takes the first: running, the queue is empty again
        facts.schedule(hashes)  # one fits, the third is dropped
        compute.release.set()
        await facts.idle()

        assert sorted(compute.calls) == sorted(hashes[:2])
        assert await facts_row(settings, contents[2]) is None
        runtime.files.tree.facts = facts  # listings now schedule on the counted service
        await children(client, alice, alice.root_id)
        await facts.idle()
        assert sorted(compute.calls) == sorted(hashes)
        await facts.close()


async def test_an_image_over_the_time_limit_stores_nothing_and_rests_before_a_retry(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout may only mean a busy server: no failure row (that would be for ever), no retry on every
    listing either, but another try once the rest period has passed."""
    settings = make_settings(settings_env, image_transform_timeout=0.2)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        content = photo("2021:01:01 10:00:00")
        await upload(client, alice, alice.root_id, "slow.jpg", content)
        await runtime.files.facts.idle()
        await forget_facts(settings)
        compute = Counting(delay=0.6)
        facts = FactsService(runtime.files.deps, compute=compute)
        runtime.files.tree.facts = facts

        listed = await children(client, alice, alice.root_id)
        await facts.idle()
        row = await facts_row(settings, content)
        for _ in range(2):
            listed = await children(client, alice, alice.root_id)
            await facts.idle()
        calls_while_resting = len(compute.calls)
        await asyncio.sleep(0.5)  # the overrunning thread ends and gives its slot back
        monkeypatch.setattr(facts_module, "TIMEOUT_RETRY_SECONDS", 0.0)
        await children(client, alice, alice.root_id)
        await facts.idle()

        assert row is None
        assert "image" not in listed[0]
        assert calls_while_resting == 1
        assert len(compute.calls) == 2
        await asyncio.sleep(0.5)
        await facts.close()


@pytest.mark.parametrize("bad", [{"image_facts_queue": "0"}, {"image_facts_concurrency": "65"}])
def test_bad_settings_are_refused(settings_env: dict[str, str], bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make_settings(settings_env, **bad)

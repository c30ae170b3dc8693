"""Which old versions of a file to keep: the newest N, then fewer and fewer as they age.

The rule (pure: no database, no clock of its own):

* The current version and pinned versions are never dropped, and take no part in the rest.
* The ``keep_last`` newest other versions are always kept.
* Older ones are *thinned* by a schedule of stages ``interval:age``: a version younger than ``age`` falls
  in the first such stage, and each stage keeps one version per ``interval`` of wall-clock time (the
  newest one of each interval). A last stage without an age covers everything older; without one,
  versions older than the last age are dropped. An interval of ``0`` keeps every version of its stage.

The default ``1h:1d,1d:30d,1w`` keeps one version per hour for a day, one per day for a month and one
per week after that (the schedule of Time Machine and Syncthing's staggered versioning). Intervals are
aligned to the epoch, not to the version, so a version that represents its hour keeps doing so as
time passes until it moves into a coarser stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_SCHEDULE = "1h:1d,1d:30d,1w"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d{1,6})([smhdw]?)$")


class ScheduleError(ValueError):
    """A thinning schedule that cannot be read; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Stage:
    interval: timedelta
    until: timedelta | None  # None: everything older than the previous stage


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int
    stages: tuple[Stage, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the rule needs to know of one version."""

    id: str
    created_at: datetime
    pinned: bool


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ScheduleError(f"{text!r} is not a duration like 30m, 1h, 7d or 2w")
    number, unit = match.groups()
    if unit == "" and number != "0":
        raise ScheduleError(f"{text!r} needs a unit (s, m, h, d or w)")
    return timedelta(seconds=int(number) * _UNITS.get(unit, 1))


def parse_schedule(text: str) -> tuple[Stage, ...]:
    """``"1h:1d,1d:30d,1w"`` → stages. The empty string means: drop everything past ``keep_last``."""
    stages: list[Stage] = []
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    for index, part in enumerate(parts):
        interval_text, _, until_text = part.partition(":")
        interval = parse_duration(interval_text)
        until = parse_duration(until_text) if until_text.strip() else None
        if until is None and index != len(parts) - 1:
            raise ScheduleError(f"stage {part!r}: only the last stage may leave out its age limit")
        if until is not None and until <= timedelta(0):
            raise ScheduleError(f"stage {part!r}: the age limit must be more than 0")
        previous = stages[-1].until if stages else None
        if until is not None and previous is not None and until <= previous:
            raise ScheduleError(f"stage {part!r}: age limits must grow from one stage to the next")
        stages.append(Stage(interval=interval, until=until))
    return tuple(stages)


def versions_to_drop(
    versions: Sequence[Candidate], *, current_id: str | None, policy: RetentionPolicy, now: datetime
) -> list[str]:
    """Ids of the versions the policy lets go, newest first. ``versions`` may come in any order."""
    ordered = sorted(
        (v for v in versions if v.id != current_id and not v.pinned),
        key=lambda v: (v.created_at, v.id),
        reverse=True,
    )
    drop: list[str] = []
    taken: set[tuple[int, int]] = set()
    for version in ordered[policy.keep_last :]:
        stage_index = _stage_for(now - version.created_at, policy.stages)
        if stage_index is None:
            drop.append(version.id)
            continue
        interval = policy.stages[stage_index].interval
        if interval <= timedelta(0):
            continue
        bucket = (stage_index, int(version.created_at.timestamp() // interval.total_seconds()))
        if bucket in taken:
            drop.append(version.id)
        else:
            taken.add(bucket)
    return drop


def _stage_for(age: timedelta, stages: Sequence[Stage]) -> int | None:
    for index, stage in enumerate(stages):
        if stage.until is None or age < stage.until:
            return index
    return None

"""Version retention rules (pure): the thinning schedule parser and which versions a policy drops."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stowage.rules.retention import (
    DEFAULT_SCHEDULE,
    Candidate,
    RetentionPolicy,
    ScheduleError,
    Stage,
    parse_duration,
    parse_schedule,
    versions_to_drop,
)

NOW = datetime(2024, 6, 15, 12, 30, tzinfo=UTC)  # a Saturday
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)


def at(text: str) -> datetime:
    """``"2024-06-15 12:20"`` as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def make(*stamps: str, pinned: tuple[str, ...] = ()) -> list[Candidate]:
    """Candidates whose id is their timestamp text (so a failure reads like the test)."""
    return [Candidate(id=stamp, created_at=at(stamp), pinned=stamp in pinned) for stamp in stamps]


def aged(count: int, step: timedelta = timedelta(minutes=1)) -> list[Candidate]:
    """``count`` versions, ``v0`` the newest, one ``step`` apart, ending ``step`` before NOW."""
    return [Candidate(id=f"v{i}", created_at=NOW - step * (i + 1), pinned=False) for i in range(count)]


def drop(
    versions: list[Candidate], *, keep_last: int, schedule: str, current_id: str | None = None, now: datetime = NOW
) -> list[str]:
    policy = RetentionPolicy(keep_last=keep_last, stages=parse_schedule(schedule))
    return versions_to_drop(versions, current_id=current_id, policy=policy, now=now)


# --- parse_schedule ---------------------------------------------------------------------------------


def test_default_schedule_is_hourly_for_a_day_daily_for_a_month_then_weekly() -> None:
    assert parse_schedule(DEFAULT_SCHEDULE) == (
        Stage(interval=HOUR, until=DAY),
        Stage(interval=DAY, until=30 * DAY),
        Stage(interval=WEEK, until=None),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("1h:1d", (Stage(HOUR, DAY),)),
        ("1w", (Stage(WEEK, None),)),
        (" 30m : 2h , 0:1d ,1d ", (Stage(timedelta(minutes=30), 2 * HOUR), Stage(timedelta(0), DAY), Stage(DAY, None))),
        ("0:1d", (Stage(timedelta(0), DAY),)),
        (
            "0s:90s,1m:10m",
            (Stage(timedelta(0), timedelta(seconds=90)), Stage(timedelta(minutes=1), timedelta(minutes=10))),
        ),
        ("2w:8w,4w", (Stage(2 * WEEK, 8 * WEEK), Stage(4 * WEEK, None))),
        ("1h:", (Stage(HOUR, None),)),  # an empty age limit is the open last stage
    ],
)
def test_valid_schedules(text: str, expected: tuple[Stage, ...]) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("45s", 45), ("15m", 900), ("2h", 7200), ("3d", 3 * 86400), ("2w", 14 * 86400), ("999999s", 999999)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # not a duration at all
        ("1x:1d", "'1x' is not a duration"),
        ("1h:1d,weekly", "'weekly' is not a duration"),
        ("-1h:1d", "'-1h' is not a duration"),
        ("1.5h:1d", "'1.5h' is not a duration"),
        ("1h:1d,", "'' is not a duration"),
        ("1h:1d,,1w", "'' is not a duration"),
        ("1h:1d:2d", "'1d:2d' is not a duration"),
        ("1234567s", "'1234567s' is not a duration"),
        ("h:1d", "'h' is not a duration"),
        # a number without a unit (only 0 may leave it out)
        ("1:1d", "'1' needs a unit"),
        ("1h:30", "'30' needs a unit"),
        # age limits must grow
        ("1h:1d,1d:1d", "age limits must grow"),
        ("1h:2d,1d:1d", "age limits must grow"),
        ("1h:24h,1d:1d", "age limits must grow"),  # equal, spelled differently
        ("1h:1d,1d:30d,1w:7d", "age limits must grow"),  # compared with the stage just before, not the first
        ("1h:1d,1d:30d,1w:30d", "age limits must grow"),
        # only the last stage may be open
        ("1h,1d:30d", "only the last stage may leave out its age limit"),
        ("1h:1d,1d,1w", "only the last stage may leave out its age limit"),
        # zero age limit
        ("1h:0", "the age limit must be more than 0"),
        ("0:0d", "the age limit must be more than 0"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)

    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- versions_to_drop: keep_last ------------------------------------------------------------------


def test_keep_last_only_drops_everything_older_newest_first() -> None:
    versions = aged(6)

    assert drop(versions, keep_last=3, schedule="") == ["v3", "v4", "v5"]


def test_input_order_does_not_matter() -> None:
    versions = aged(8)
    shuffled = versions[:]
    random.Random(7).shuffle(shuffled)

    assert drop(shuffled, keep_last=2, schedule="") == ["v2", "v3", "v4", "v5", "v6", "v7"]


def test_nothing_to_drop_within_keep_last() -> None:
    assert drop(aged(4), keep_last=4, schedule="") == []
    assert drop(aged(4), keep_last=10, schedule="") == []
    assert drop([], keep_last=0, schedule="") == []


def test_keep_last_zero_with_empty_schedule_keeps_only_current_and_pinned() -> None:
    versions = [*aged(4), Candidate(id="pin", created_at=NOW - 10 * DAY, pinned=True)]

    assert drop(versions, keep_last=0, schedule="", current_id="v0") == ["v1", "v2", "v3"]


def test_keep_last_slots_are_kept_whatever_their_age_and_bucket() -> None:
    # Three in one hour and one far past the last age limit: the newest N are kept regardless.
    versions = make("2024-06-15 12:20", "2024-06-15 12:10", "2024-06-15 12:05", "2020-01-01 00:00")

    assert drop(versions, keep_last=4, schedule="1h:1d") == []
    assert drop(versions, keep_last=3, schedule="1h:1d") == ["2020-01-01 00:00"]
    assert drop(versions, keep_last=1, schedule="1h:1d") == ["2024-06-15 12:05", "2020-01-01 00:00"]


# --- versions_to_drop: thinning -------------------------------------------------------------------


def test_hourly_stage_keeps_the_newest_of_each_clock_hour() -> None:
    versions = make(
        "2024-06-15 12:20",
        "2024-06-15 12:05",  # same hour as 12:20 → dropped
        "2024-06-15 11:59",  # six minutes from 12:05 but another hour → kept
        "2024-06-15 11:01",  # same hour as 11:59 → dropped
        "2024-06-15 09:00",
        "2024-06-14 12:31",  # 23 h 59 m old: still hourly
        "2024-06-14 12:30",  # exactly 1 d old: past the only stage's limit → dropped
        "2024-06-13 00:00",
    )

    assert drop(versions, keep_last=0, schedule="1h:1d") == [
        "2024-06-15 12:05",
        "2024-06-15 11:01",
        "2024-06-14 12:30",
        "2024-06-13 00:00",
    ]


def test_default_schedule_thins_hourly_then_daily_then_weekly() -> None:
    assert at("2024-04-04 00:00").weekday() == 3  # epoch weeks run Thursday to Wednesday (1970-01-01 was one)
    versions = make(
        # hourly stage: younger than 1 d (after 2024-06-14 12:30)
        "2024-06-15 12:20",
        "2024-06-15 12:05",  # drop: same hour as 12:20
        "2024-06-15 11:59",
        "2024-06-14 13:10",
        "2024-06-14 12:40",
        "2024-06-14 12:35",  # drop: same hour as 12:40
        # daily stage: 1 d to 30 d (after 2024-05-16 12:30); the hourly versions of 06-14 do not count here
        "2024-06-14 12:20",
        "2024-06-14 08:00",  # drop: same day as 06-14 12:20
        "2024-06-10 20:00",
        "2024-06-10 08:00",  # drop: same day as 20:00
        "2024-06-09 23:59",
        "2024-05-16 13:00",
        # weekly stage: 30 d and older
        "2024-05-16 12:00",
        "2024-04-10 23:00",  # Wednesday
        "2024-04-04 01:00",  # drop: Thursday of the same epoch week
        "2024-04-03 23:00",  # Wednesday of the week before
        "2020-01-01 00:00",
    )

    assert drop(versions, keep_last=0, schedule=DEFAULT_SCHEDULE) == [
        "2024-06-15 12:05",
        "2024-06-14 12:35",
        "2024-06-14 08:00",
        "2024-06-10 08:00",
        "2024-04-04 01:00",
    ]


def test_a_version_exactly_at_an_age_limit_belongs_to_the_next_stage() -> None:
    # 2024-06-14 12:30 is exactly 1 d old: the daily stage owns it, so it shares a bucket with 12:20
    # of the same day. In the hourly stage it would have a bucket of its own and 12:20 would stay.
    versions = make("2024-06-14 12:30", "2024-06-14 12:20")

    assert drop(versions, keep_last=0, schedule="1h:1d,1d:30d") == ["2024-06-14 12:20"]


def test_a_version_exactly_at_the_last_age_limit_is_dropped() -> None:
    exactly_a_day = make("2024-06-14 12:30")
    a_minute_younger = make("2024-06-14 12:31")

    assert drop(exactly_a_day, keep_last=0, schedule="1h:1d") == ["2024-06-14 12:30"]
    assert drop(a_minute_younger, keep_last=0, schedule="1h:1d") == []


def test_daily_buckets_are_utc_days_not_24_hours_back_from_now() -> None:
    versions = make("2024-06-10 00:10", "2024-06-09 23:50", "2024-06-09 00:01")

    assert drop(versions, keep_last=0, schedule="1d:30d") == ["2024-06-09 00:01"]


def test_a_version_keeps_representing_its_hour_as_time_passes() -> None:
    versions = make("2024-06-15 10:50", "2024-06-15 10:10", "2024-06-15 09:30")

    for minutes in (0, 30, 90, 600):
        assert drop(versions, keep_last=0, schedule="1h:1d", now=NOW + timedelta(minutes=minutes)) == [
            "2024-06-15 10:10"
        ]


def test_keep_last_versions_take_no_bucket() -> None:
    # The newest is kept by keep_last; the next one of the same hour still represents that hour.
    versions = make("2024-06-15 12:20", "2024-06-15 12:10", "2024-06-15 12:05")

    assert drop(versions, keep_last=1, schedule="1h:1d") == ["2024-06-15 12:05"]


def test_interval_zero_keeps_every_version_of_its_stage() -> None:
    versions = make(
        "2024-06-15 12:29",
        "2024-06-15 12:28",
        "2024-06-15 12:27",
        "2024-06-14 13:00",
        "2024-06-13 10:00",  # 1 d to 7 d: daily
        "2024-06-13 09:00",  # drop
        "2024-06-01 00:00",  # past 7 d: drop
    )

    assert drop(versions, keep_last=0, schedule="0:1d,1d:7d") == ["2024-06-13 09:00", "2024-06-01 00:00"]


def test_past_the_last_age_limit_everything_is_dropped() -> None:
    versions = make("2024-06-15 12:00", "2024-06-10 00:00", "2024-05-01 00:00", "2023-01-01 00:00")

    assert drop(versions, keep_last=0, schedule="1h:1d,1d:30d") == [
        "2024-05-01 00:00",
        "2023-01-01 00:00",
    ]


def test_open_last_stage_keeps_the_oldest_history_thinned_not_dropped() -> None:
    versions = make("2019-01-01 00:00", "2010-01-01 00:00", "2010-01-01 01:00")

    assert drop(versions, keep_last=0, schedule="1d:1w,4w") == ["2010-01-01 00:00"]


def test_empty_schedule_drops_everything_beyond_keep_last() -> None:
    versions = make("2024-06-15 12:29", "2024-06-15 11:00", "2024-06-14 00:00", "2020-01-01 00:00")

    assert drop(versions, keep_last=1, schedule="") == ["2024-06-15 11:00", "2024-06-14 00:00", "2020-01-01 00:00"]


def test_a_version_from_the_future_counts_as_new() -> None:
    versions = make("2024-06-15 14:00", "2024-06-15 13:00", "2024-06-15 12:00")

    assert drop(versions, keep_last=0, schedule="1h:1d") == []


# --- versions_to_drop: current and pinned -----------------------------------------------------------


def test_current_is_never_dropped_and_takes_no_slot_or_bucket() -> None:
    versions = make("2024-06-15 12:20", "2024-06-15 12:10", "2024-06-15 12:05", "2001-01-01 00:00")

    # The current one is the oldest and past every limit: still kept.
    assert drop(versions, keep_last=0, schedule="1h:1d", current_id="2001-01-01 00:00") == [
        "2024-06-15 12:10",
        "2024-06-15 12:05",
    ]
    # The current one shares an hour with 12:10 and 12:05: 12:10 still represents that hour.
    assert drop(versions, keep_last=0, schedule="1h:1d", current_id="2024-06-15 12:20") == [
        "2024-06-15 12:05",
        "2001-01-01 00:00",
    ]
    # The current one takes no keep_last slot.
    assert drop(versions, keep_last=1, schedule="", current_id="2024-06-15 12:20") == [
        "2024-06-15 12:05",
        "2001-01-01 00:00",
    ]


def test_current_id_none_considers_every_version() -> None:
    assert drop(aged(3), keep_last=1, schedule="") == ["v1", "v2"]


def test_pinned_versions_are_never_dropped() -> None:
    versions = make(
        "2024-06-15 12:20", "2024-06-15 12:10", "2020-01-01 00:00", pinned=("2024-06-15 12:10", "2020-01-01 00:00")
    )

    assert drop(versions, keep_last=0, schedule="") == ["2024-06-15 12:20"]
    assert drop(versions, keep_last=0, schedule="1h:1d") == []


def test_pinned_versions_take_no_keep_last_slot() -> None:
    versions = aged(5)
    versions[0] = Candidate(id="v0", created_at=versions[0].created_at, pinned=True)

    assert drop(versions, keep_last=2, schedule="") == ["v3", "v4"]


def test_pinned_versions_take_no_bucket() -> None:
    versions = make("2024-06-15 12:20", "2024-06-15 12:10", "2024-06-15 12:05", pinned=("2024-06-15 12:20",))

    assert drop(versions, keep_last=0, schedule="1h:1d") == ["2024-06-15 12:05"]


# --- properties -------------------------------------------------------------------------------------

SCHEDULES = ["", DEFAULT_SCHEDULE, "1h:1d", "0:1h,1h:1d", "1m:1h,1h:1w,4w", "1d:30d,30d:365d", "1w"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Candidate], str | None, RetentionPolicy]:
    ages = draw(st.lists(st.integers(min_value=-3600, max_value=400 * 86400), max_size=40))
    pins = draw(st.lists(st.booleans(), min_size=len(ages), max_size=len(ages)))
    versions = [
        Candidate(id=f"v{i}", created_at=NOW - timedelta(seconds=age), pinned=pin)
        for i, (age, pin) in enumerate(zip(ages, pins, strict=True))
    ]
    current = draw(st.sampled_from([None, *(v.id for v in versions)]))
    policy = RetentionPolicy(
        keep_last=draw(st.integers(min_value=0, max_value=6)),
        stages=parse_schedule(draw(st.sampled_from(SCHEDULES))),
    )
    return versions, current, policy


@settings(max_examples=300, deadline=None)
@given(histories())
def test_never_drops_current_pinned_or_the_newest_keep_last(
    history: tuple[list[Candidate], str | None, RetentionPolicy],
) -> None:
    versions, current, policy = history

    dropped = versions_to_drop(versions, current_id=current, policy=policy, now=NOW)

    by_id = {v.id: v for v in versions}
    assert len(dropped) == len(set(dropped))
    assert set(dropped) <= set(by_id)
    assert current not in dropped
    assert not any(by_id[i].pinned for i in dropped)
    others = sorted(
        (v for v in versions if v.id != current and not v.pinned), key=lambda v: (v.created_at, v.id), reverse=True
    )
    assert not {v.id for v in others[: policy.keep_last]} & set(dropped)
    # newest first
    assert [by_id[i].created_at for i in dropped] == sorted((by_id[i].created_at for i in dropped), reverse=True)
    # Thinning twice at the same moment drops nothing more (housekeeping may run any number of times).
    kept = [v for v in versions if v.id not in set(dropped)]
    assert versions_to_drop(kept, current_id=current, policy=policy, now=NOW) == []

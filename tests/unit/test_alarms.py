"""Alarm management after ISA-18.2, without a browser: priorities, flood suppression, acknowledge
all, shelving, the alarm log and summary, durations in human units, live and history modes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from dashboards.alarm_book import AlarmBook, AlarmLog
from dashboards.alarms import PLANT, detect, evaluate, summary
from dashboards.modes import decide, human_duration
from twin.spec import PlantSpec, Tag, builtin_spec
from twin.store.liveness import ALIVE, alive_tag

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
CSTR = builtin_spec("cstr")


def wide_spec() -> PlantSpec:
    """53 tags as on the issue's plant: 9 CVs, 12 MVs, 32 DVs, period 3 s."""
    tags = [
        Tag(f"XMEAS{i:02d}", None, "kPa", role, 0.0, 100.0)
        for i, role in enumerate(["cv"] * 9 + ["mv"] * 12 + ["dv"] * 32, start=1)
    ]
    return PlantSpec("wide", 3.0, tuple(tags))


WIDE = wide_spec()


def rows(spec: PlantSpec, at: datetime, **special: tuple[float, str, datetime]) -> pl.DataFrame:
    """Newest samples: every tag mid-range (good) at ``at`` unless given (value, quality, ts)."""
    mid = {t.name: (t.op_low + t.op_high) / 2 for t in spec.tags}
    got = {t: special.get(t, (mid[t], "good", at)) for t in spec.tag_names}
    return pl.DataFrame(
        {
            "tag": list(got),
            "ts": [v[2] for v in got.values()],
            "value": [v[0] for v in got.values()],
            "quality": [v[1] for v in got.values()],
        }
    )


def marks(at: datetime, tags: list[str] | None = None) -> pl.DataFrame:
    names = [ALIVE] if tags is None else [alive_tag(t) for t in tags]
    return pl.DataFrame({"tag": names, "ts": [at] * len(names), "value": [60.0] * len(names)})


def test_a_flood_of_53_stale_tags_collapses_to_one_plant_alarm() -> None:
    found = evaluate(WIDE, rows(WIDE, NOW - timedelta(minutes=12)), NOW)
    assert [(a.tag, a.kind, a.priority) for a in found] == [(PLANT, "no data", "high")]
    assert found[0].message == "no data from the collector for 12 min (53 of 53 tags)"
    # a tag the collector's live session covers is not stale: its value held still (RBE)
    quiet = evaluate(WIDE, rows(WIDE, NOW - timedelta(minutes=12)), NOW, marks=marks(NOW))
    assert quiet == []
    # a couple of stale tags stay per-tag, low priority
    old = (50.0, "good", NOW - timedelta(minutes=4))
    two = evaluate(WIDE, rows(WIDE, NOW, XMEAS30=old, XMEAS31=old), NOW)
    assert sorted((a.tag, a.kind, a.priority) for a in two) == [
        ("XMEAS30", "stale", "low"),
        ("XMEAS31", "stale", "low"),
    ]
    assert two[0].message.endswith("no new data for 4 min")


def test_a_dead_collector_of_some_tags_and_a_quality_flood_are_one_alarm_each() -> None:
    mine = [f"XMEAS{i:02d}" for i in range(40, 54)]  # one of two sessions held these 14 tags
    old = NOW - timedelta(minutes=5)
    data = rows(WIDE, NOW, **{t: (50.0, "good", old) for t in mine})
    live = marks(NOW, [t for t in WIDE.tag_names if t not in mine])
    found = evaluate(WIDE, data, NOW, marks=pl.concat([live, marks(old, mine)]))
    assert [(a.kind, a.priority) for a in found] == [("no data", "high")]
    assert found[0].message == (
        "no data from the collector of XMEAS40, XMEAS41, XMEAS42, ... for 5 min (14 of 14 tags)"
    )
    bad = rows(WIDE, NOW, **{t: (50.0, "bad", NOW) for t in WIDE.tag_names[:30]})
    found = evaluate(WIDE, bad, NOW)
    assert [(a.tag, a.kind, a.message) for a in found] == [
        (PLANT, "bad data", "bad or uncertain quality on 30 of 53 tags")
    ]


def test_priorities_follow_isa_18_2_and_order_the_list() -> None:
    spec = PlantSpec(
        "p",
        6.0,
        (
            Tag("T", None, "K", "cv", 300.0, 345.0, op_lo=320.0, op_hi=330.0),
            Tag("Ca", None, "mol/L", "cv", 0.5, 1.0),
            Tag("Tc", None, "K", "mv", 285.0, 302.0),
            Tag("Tf", None, "K", "dv", 330.0, 370.0),
        ),
    )
    book = AlarmBook()
    at_hi = (302.0, "good", NOW)
    stale = (350.0, "good", NOW - timedelta(minutes=1))
    book.update(detect(spec, rows(spec, NOW, Tc=at_hi, Tf=stale), NOW), NOW)
    t1, t2 = NOW + timedelta(seconds=5), NOW + timedelta(seconds=10)
    off = {"T": (335.0, "good", t1), "Ca": (1.2, "good", t1), "Tc": (302.0, "good", t1)}
    book.update(detect(spec, rows(spec, t1, **off), t1), t1)  # Tf is back
    off["Tc"] = (302.0, "uncertain", t2)
    book.update(detect(spec, rows(spec, t2, **off), t2), t2)
    got = [(a.priority, a.kind, a.tag) for a in book.listing()]
    assert got == [
        ("high", "limit", "Ca"),  # a CV beyond its instrument range
        ("medium", "quality", "Tc"),  # bad quality, raised last: newest first in a priority
        ("medium", "operating", "T"),  # a CV beyond its operating limits
        ("low", "at limit", "Tc"),  # an MV with no room to move
        ("low", "stale", "Tf"),  # cleared, not yet acknowledged
    ]
    assert book.listing()[2].message == "T 335 K above op hi 330 K"
    assert summary(book).counts == {"high": 1, "medium": 2, "low": 1}  # Tf stale has cleared


def test_acknowledge_all_acks_everything_and_logs_one_event_per_alarm_with_the_user(
    tmp_path: Path,
) -> None:
    log = AlarmLog(tmp_path)
    book = AlarmBook(log)
    found = detect(CSTR, rows(CSTR, NOW, T=(350.0, "good", NOW), Ca=(0.8, "bad", NOW)), NOW)
    book.update(found, NOW)
    assert book.unacknowledged == 2
    assert book.acknowledge_all("ada", NOW + timedelta(seconds=3)) == 2
    assert book.unacknowledged == 0 and all(a.acked for a in book.listing())
    events = [(e.event, e.tag, e.user) for e in log.read()]
    assert sorted(events) == sorted(
        [
            ("raised", "T", ""),
            ("raised", "Ca", ""),
            ("acknowledged", "T", "ada"),
            ("acknowledged", "Ca", "ada"),
        ]
    )
    day_file = tmp_path / "alarms" / "2026-05-01.jsonl"
    first = json.loads(day_file.read_text().splitlines()[-1])
    assert first["user"] == "ada" and first["event"] == "acknowledged" and first["priority"]
    # cleared: logged, and (acknowledged) gone; the next acknowledge-all has nothing to do
    book.update([], NOW + timedelta(seconds=6))
    assert book.listing() == [] and book.acknowledge_all("ada") == 0
    assert [e.event for e in log.tail(2)] == ["cleared", "cleared"]
    # a restarted app resumes: an active acknowledged alarm stays acknowledged
    book.update(found, NOW + timedelta(seconds=9))
    book.acknowledge("T:limit", "bo")
    again = AlarmBook(log)
    again.restore(log.read())
    assert [(a.key, a.acked) for a in again.listing()] == [("T:limit", True), ("Ca:quality", False)]


def test_a_shelved_alarm_is_hidden_until_it_expires_then_returns_if_still_active(
    tmp_path: Path,
) -> None:
    log = AlarmLog(tmp_path)
    book = AlarmBook(log)
    found = detect(CSTR, rows(CSTR, NOW, T=(350.0, "good", NOW), Ca=(0.8, "bad", NOW)), NOW)
    book.update(found, NOW)
    with pytest.raises(ValueError, match="reason"):
        book.shelve("Ca:quality", "ada", " ", NOW + timedelta(hours=1))
    book.shelve("Ca:quality", "ada", "analyser in maintenance", NOW + timedelta(hours=1), NOW)
    half = NOW + timedelta(minutes=30)
    book.update(found, half)
    assert [a.key for a in book.listing()] == ["T:limit"]
    assert [a.key for a in book.shelved()] == ["Ca:quality"]
    s = summary(book)
    assert (s.shelved, s.unacknowledged, s.worst) == (1, 1, "T 350 K above hi 345 K")
    book.update(found, NOW + timedelta(minutes=61))  # expired, still bad: back in the list
    assert [a.key for a in book.listing()] == ["T:limit", "Ca:quality"]
    shelved = [e for e in log.read() if e.event in ("shelved", "unshelved")]
    assert [(e.event, e.user, e.reason) for e in shelved] == [
        ("shelved", "ada", "analyser in maintenance"),
        ("unshelved", "", ""),
    ]
    assert shelved[0].until == NOW + timedelta(hours=1)
    # one that clears while shelved is gone when its shelf expires
    book.shelve("T:limit", "ada", "known", NOW + timedelta(hours=2), NOW + timedelta(minutes=61))
    book.update([], NOW + timedelta(minutes=62))
    book.update([], NOW + timedelta(hours=3))
    assert [a.key for a in book.listing()] == ["Ca:quality"]  # cleared, not acknowledged


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "0 s"),
        (12, "12 s"),
        (59.4, "59 s"),
        (60, "1 min"),
        (4 * 60 + 10, "4 min"),
        (3599, "1 h"),
        (3 * 3600 + 20 * 60, "3 h 20 min"),
        (2 * 86400 + 5 * 3600, "2 d 5 h"),
        (45 * 86400, "45 d"),
        (1531511.6 * 60, "2.9 years"),
        (-5, "-5 s"),
        (float("nan"), "unknown"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_an_old_historian_is_history_a_recent_one_live() -> None:
    end = NOW - timedelta(minutes=1531511.6)
    old = decide(CSTR, end - timedelta(days=30), end, NOW)
    assert (old.kind, old.start, old.end) == ("history", end - timedelta(days=30), end)
    assert old.why == "no collector is writing to this historian (newest sample 2.9 years ago)"
    assert decide(CSTR, None, NOW - timedelta(minutes=4), NOW).live  # within 5 min
    assert not decide(CSTR, None, NOW - timedelta(minutes=6), NOW).live
    slow = PlantSpec("slow", 60.0, CSTR.tags)  # 10 sample periods of a minute
    assert decide(slow, None, NOW - timedelta(minutes=9), NOW).live
    assert decide(CSTR, None, None, NOW).live  # empty: a collector starting

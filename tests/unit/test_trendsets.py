"""Tag search and saved trend sets (:mod:`dashboards.trendsets`): what the Trends page finds, and
what it keeps per user across sessions."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from dashboards import trendsets
from dashboards.trendsets import TrendSet, TrendSetError, TrendSets, search
from twin.spec import builtin_spec, parse_spec

GROUPED = """
[plant]
name = "unit"
sample_period_s = 5.0

[[tags]]
name = "PI101"
unit = "kPa"
role = "cv"
lo = 0.0
hi = 500.0
description = "Reactor pressure"
group = "Reactor"

[[tags]]
name = "FIC102"
unit = "m3/h"
role = "mv"
lo = 0.0
hi = 40.0
description = "Feed flow"
group = "Feed"
rate_limit = 1.0

[[tags]]
name = "TI103"
unit = "degC"
role = "dv"
lo = 0.0
hi = 50.0
description = "Ambient temperature"
"""


def names(tags: list) -> list[str]:
    return [t.name for t in tags]


def test_search_finds_a_tag_by_name_description_unit_or_group() -> None:
    spec = parse_spec(GROUPED, source="grouped.toml")
    assert names(search(spec, "fic")) == ["FIC102"]  # name, any case
    assert names(search(spec, "PRESSURE")) == ["PI101"]  # description
    assert names(search(spec, "m3/h")) == ["FIC102"]  # unit
    assert names(search(spec, "reactor")) == ["PI101"]  # group (and description)
    assert names(search(spec, "temp")) == ["TI103"]  # part of a word
    assert names(search(spec, "  ")) == ["PI101", "FIC102", "TI103"]  # nothing typed: all
    assert search(spec, "xyz") == []
    cstr = builtin_spec("cstr")
    assert names(search(cstr, "coolant")) == ["Tc"]
    assert names(search(cstr, "mol/l")) == ["Ca"]
    table = trendsets.tag_table(search(spec, "f"))  # FIC102, Feed
    assert table.row(0, named=True) == {
        "tag": "FIC102",
        "role": "MV",
        "description": "Feed flow",
        "unit": "m3/h",
        "group": "Feed",
    }


def test_trend_sets_are_saved_reopened_and_deleted_per_user(tmp_path: Path) -> None:
    alice, bob = TrendSets(tmp_path, "alice"), TrendSets(tmp_path, "bob")
    assert alice.load() == {}  # nothing saved yet: no file, no error
    alice.save(TrendSet("reactor", ("T", "Tc", "T"), minutes=15, show=("limits", "setpoint")))
    alice.save(TrendSet("Feed", ("Tf",)))
    bob.save(TrendSet("reactor", ("Ca",)))
    assert alice.path == tmp_path / "trendsets" / "alice.json"
    # reopened by a new reader (another session, a restarted app)
    again = TrendSets(tmp_path, "alice")
    assert again.names() == ["Feed", "reactor"]
    one = again.get("reactor")
    assert one.tags == ("T", "Tc")  # each tag once, in the order picked
    assert one.minutes == 15 and one.show == ("setpoint", "limits")
    assert TrendSets(tmp_path, "bob").get("reactor").tags == ("Ca",)  # bob's are his own
    alice.save(TrendSet("reactor", ("Ca",)))  # the same name replaces
    assert again.get("reactor").tags == ("Ca",)
    assert alice.delete("Feed") and not alice.delete("Feed")
    assert again.names() == ["reactor"]
    with pytest.raises(TrendSetError, match="alice has no trend set 'Feed'"):
        again.get("Feed")
    leftovers = [p.name for p in (tmp_path / "trendsets").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []  # written through a temporary file renamed over the old one
    doc = json.loads(alice.path.read_text())
    assert doc["format"] == 1 and doc["user"] == "alice"


def test_a_corrupt_file_is_named_and_kept_until_set_aside(tmp_path: Path) -> None:
    store = TrendSets(tmp_path, "alice")
    store.save(TrendSet("reactor", ("T",)))
    store.path.write_text('{"format": 1, "sets": [{"name": "reactor", "tags": ["T"]', "utf-8")
    with pytest.raises(TrendSetError) as info:
        store.load()
    message = str(info.value)
    assert str(store.path) in message and "is not valid JSON (line 1" in message
    assert "left as it is" in message
    torn = store.path.read_text()
    with pytest.raises(TrendSetError):  # saving would lose what is there: refused
        store.save(TrendSet("feed", ("Tf",)))
    assert store.path.read_text() == torn
    aside = store.set_aside()
    assert (
        aside is not None and aside.read_text() == torn and aside.name.startswith("alice.json.bad-")
    )
    store.save(TrendSet("feed", ("Tf",)))
    assert store.names() == ["feed"]


def test_a_bad_set_in_the_file_is_named(tmp_path: Path) -> None:
    store = TrendSets(tmp_path, "alice")
    store.folder.mkdir(parents=True)
    store.path.write_text(json.dumps({"format": 1, "sets": [{"name": "a", "tags": "T"}]}))
    with pytest.raises(TrendSetError, match=r"alice.json: set 1: 'tags' must be a list"):
        store.load()
    store.path.write_text(json.dumps([1, 2]))
    with pytest.raises(TrendSetError, match="is not a trend-set file"):
        store.load()
    store.path.write_text(json.dumps({"format": 9, "sets": []}))
    with pytest.raises(TrendSetError, match="has format 9; this app reads format 1"):
        store.load()


def test_a_trend_set_needs_a_name_and_tags() -> None:
    with pytest.raises(TrendSetError, match="needs a name"):
        TrendSet("  ", ("T",))
    with pytest.raises(TrendSetError, match="'x' has no tags"):
        TrendSet("x", ())
    with pytest.raises(TrendSetError, match="at most 64"):
        TrendSet("x", tuple(f"t{i}" for i in range(65)))
    assert TrendSet(" reactor ", ("T",)).name == "reactor"


def test_a_user_name_never_leaves_the_folder(tmp_path: Path) -> None:
    for user in ("../../etc/passwd", ".hidden", "a/b", "Jörg Müller", ""):
        store = TrendSets(tmp_path, user)
        assert store.path.parent == tmp_path / "trendsets", user
        assert not store.path.name.startswith("."), user
    assert TrendSets(tmp_path, "alice@example.com").path.name == "alice@example.com.json"


def test_the_user_is_the_signed_in_one_else_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from twin.loop.audit import current_user

    auth = types.ModuleType("dashboards.auth")
    auth.current_user = lambda: types.SimpleNamespace(name="alice", role="operator")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dashboards.auth", auth)
    assert trendsets.user_name() == "alice"
    auth.current_user = lambda: None  # type: ignore[attr-defined]
    assert trendsets.user_name() is None  # nobody signed in: nobody to keep sets for
    monkeypatch.setitem(sys.modules, "dashboards.auth", None)  # an app without logins
    assert trendsets.user_name() == current_user()

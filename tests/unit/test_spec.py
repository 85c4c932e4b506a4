"""Plant specs: the built-in ones load, and every kind of mistake names file, tag and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.errors import SpecError
from twin.spec import PLANTS_DIR, NodeRef, builtin_spec, load_spec, parse_spec

GOOD = """
[plant]
name = "demo"
sample_period_s = 2.0

[[tags]]
name = "T"
node = "ns=2;s=Reactor.T"
unit = "K"
role = "cv"
lo = 300.0
hi = 400.0
setpoint = 350.0
weight = 1.0

[[tags]]
name = "Tc"
node = "nsu=urn:demo:plant;s=Reactor.Tc"
unit = "K"
role = "mv"
lo = 280.0
hi = 320.0
rate_limit = 1.0
write_node = "nsu=urn:demo:plant;s=Reactor.Tc.SP"

[[tags]]
name = "F"
node = "ns=2;i=1001"
unit = "L/min"
role = "dv"
lo = 0
hi = 200
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(text)
    return path


def test_good_spec_loads_into_frozen_dataclasses(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "demo" and spec.sample_period == 2.0
    assert [t.name for t in spec.cvs] == ["T"]
    assert [t.name for t in spec.mvs] == ["Tc"]
    assert [t.name for t in spec.dvs] == ["F"]
    tc = spec.tag("Tc")
    assert tc.rate_limit == 1.0 and tc.write_node is not None
    f_node = spec.tag("F").node
    assert tc.node is not None and f_node is not None
    assert tc.node.namespace_uri == "urn:demo:plant" and tc.node.identifier == "Reactor.Tc"
    assert f_node.namespace_index == 2 and f_node.kind == "i"
    with pytest.raises(AttributeError):
        spec.tag("T").lo = 0.0  # type: ignore[misc]


def test_spec_round_trips_through_to_dict(tmp_path: Path) -> None:

    spec = load_spec(write(tmp_path, GOOD))
    again = parse_spec(_dump_toml(spec.to_dict()), source="again")
    assert again.tags == spec.tags and again.sample_period == spec.sample_period


def _dump_toml(doc: dict) -> str:
    lines = ["[plant]"] + [f"{k} = {_val(v)}" for k, v in doc["plant"].items()]
    for tag in doc["tags"]:
        lines.append("[[tags]]")
        lines += [f"{k} = {_val(v)}" for k, v in tag.items()]
    return "\n".join(lines)


def _val(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


BUILTIN = ["cstr", "quadtank", "woodberry", "ph", "recycle", "fedbatch"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_specs_load(name: str) -> None:
    spec = builtin_spec(name)
    assert spec.cvs and spec.mvs
    for t in spec.mvs:
        assert t.write_node is not None and t.rate_limit and t.rate_limit > 0
    for t in spec.cvs:
        assert t.lo <= t.setpoint <= t.hi  # type: ignore[operator]


def test_every_builtin_spec_file_is_checked() -> None:
    assert {p.stem for p in PLANTS_DIR.glob("*.toml")} == set(BUILTIN)


# Each case: (how to break the good spec, expected tag, expected field, words in the message)
BAD_CASES = [
    ("missing field", ('unit = "K"\nrole = "cv"', 'unit = "K"'), "T", "role", "missing"),
    ("unknown role", ('role = "dv"', 'role = "disturbance"'), "F", "role", "unknown role"),
    ("lo >= hi", ("lo = 300.0\nhi = 400.0", "lo = 400.0\nhi = 300.0"), "T", "hi", "below"),
    ("lo == hi", ("lo = 0\nhi = 200", "lo = 5\nhi = 5"), "F", "hi", "below"),
    ("mv without rate limit", ("rate_limit = 1.0\n", ""), "Tc", "rate_limit", "rate limit"),
    ("unit not text", ('unit = "K"', "unit = 3"), "T", "unit", "must be a string"),
    ("mv without lo", ("lo = 280.0\n", ""), "Tc", "lo", "missing"),
    (
        "bad node id",
        ('node = "ns=2;i=1001"', 'node = "ns=two;i=1001"'),
        "F",
        "node",
        "namespace index",
    ),
    (
        "bad node kind",
        ('node = "ns=2;i=1001"', 'node = "ns=2;x=1001"'),
        "F",
        "node",
        "i=, s=, g= or b=",
    ),
    ("non-numeric i=", ('node = "ns=2;i=1001"', 'node = "ns=2;i=abc"'), "F", "node", "integer"),
    (
        "nsu without ;",
        ('node = "nsu=urn:demo:plant;s=Reactor.Tc"', 'node = "nsu=urn:demo:plant"'),
        "Tc",
        "node",
        "nsu=",
    ),
    (
        "bad write node",
        ('write_node = "nsu=urn:demo:plant;s=Reactor.Tc.SP"', 'write_node = "Tc.SP"'),
        "Tc",
        "write_node",
        "bad node id",
    ),
    (
        "setpoint outside limits",
        ("setpoint = 350.0", "setpoint = 450.0"),
        "T",
        "setpoint",
        "outside",
    ),
    ("negative weight", ("weight = 1.0", "weight = -1.0"), "T", "weight", ">= 0"),
    ("zero rate limit", ("rate_limit = 1.0", "rate_limit = 0.0"), "Tc", "rate_limit", "> 0"),
    ("text where number", ("hi = 400.0", 'hi = "400"'), "T", "hi", "finite number"),
    ("nan limit", ("hi = 400.0", "hi = nan"), "T", "hi", "finite number"),
    (
        "typo in field",
        ("weight = 1.0", "weight = 1.0\nsetpiont = 3"),
        "T",
        "setpiont",
        "unknown field",
    ),
    (
        "cv field on a dv",
        ('role = "dv"', 'role = "dv"\nsetpoint = 1.0'),
        "F",
        "setpoint",
        "unknown field",
    ),
    ("reserved tag name", ('name = "F"', 'name = "ts"'), "ts", "name", "tag name"),
    (
        "duplicate node",
        ('node = "ns=2;i=1001"', 'node = "ns=2;s=Reactor.T"'),
        "F",
        "node",
        "already used",
    ),
]


@pytest.mark.parametrize(
    ("case", "edit", "tag", "field", "words"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_spec_names_file_tag_and_field(
    tmp_path: Path, case: str, edit: tuple[str, str], tag: str, field: str, words: str
) -> None:
    old, new = edit
    assert old in GOOD, case
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    msg = str(err)
    assert err.file == str(path) and str(path) in msg
    assert err.tag == tag and f"tag {tag!r}" in msg
    assert err.field == field and f"field {field!r}" in msg
    assert words in msg


def test_duplicate_tag_is_refused(tmp_path: Path) -> None:
    dup = (
        GOOD
        + '\n[[tags]]\nname = "T"\nnode = "ns=2;s=Other"\nunit = "K"\nrole = "dv"\nlo = 0\nhi = 1\n'
    )
    with pytest.raises(SpecError, match=r"tag 'T': field 'name': duplicate tag name"):
        load_spec(write(tmp_path, dup))


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("this is = = not toml", None, "not valid TOML"),
        ("[[tags]]\nname='x'", "plant", "missing [plant]"),
        ('[plant]\nname = "p"\nsample_period_s = 1.0\n', "tags", "at least one tag"),
        ('[plant]\nname = "p"\nsample_period_s = 0\n[[tags]]\nname="a"', "sample_period_s", "> 0"),
        ("[plant]\nsample_period_s = 1\n", "name", "missing"),
    ],
)
def test_bad_plant_table(tmp_path: Path, text: str, field: str | None, words: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert info.value.field == field
    assert words in str(info.value) and "plant.toml" in str(info.value)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.toml")


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="cstr"):
        builtin_spec("nope")


def test_nsu_node_resolves_against_the_namespace_array() -> None:
    ref = NodeRef.parse("nsu=urn:demo:plant;s=Reactor.T")
    assert (
        ref.resolve(["http://opcfoundation.org/UA/", "urn:server", "urn:demo:plant"])
        == "ns=2;s=Reactor.T"
    )
    # after a restart that renumbers the namespaces the same spec still finds the node
    assert ref.resolve(
        ["http://opcfoundation.org/UA/", "urn:x", "urn:server", "urn:demo:plant"]
    ) == ("ns=3;s=Reactor.T")
    with pytest.raises(LookupError, match="urn:demo:plant"):
        ref.resolve(["http://opcfoundation.org/UA/"])
    assert NodeRef.parse("ns=2;s=A").resolve([]) == "ns=2;s=A"
    assert str(NodeRef.parse("i=84")) == "i=84"
    assert str(NodeRef.parse("ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a")).startswith("ns=3;g=")


def test_readme_spec_example_is_a_valid_spec() -> None:
    readme = (PLANTS_DIR.parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(block, source="README.md")
    assert [t.role for t in spec.tags] == ["cv", "mv", "dv"]
    assert spec.mv_timing == "to_row"  # the README example states the default explicitly


def test_mv_timing_defaults_to_the_convention_and_round_trips() -> None:
    from twin.spec import MV_TIMING, MvTiming, spec_to_toml

    for path in sorted(PLANTS_DIR.glob("*.toml")):  # specs written before the field load as before
        assert load_spec(path).mv_timing is MV_TIMING
    spec = parse_spec(GOOD.replace("[plant]", '[plant]\nmv_timing = "from_row"'), source="p.toml")
    assert spec.mv_timing is MvTiming.FROM_ROW
    again = parse_spec(spec_to_toml(spec), source="p.toml")
    assert again == spec
    assert "mv_timing" not in spec_to_toml(parse_spec(GOOD))


# --- offline specs: no OPC-UA nodes, no units, export columns -------------------------------------

OFFLINE = """
[plant]
name = "offline"
sample_period_s = 60.0

[[tags]]
name = "XMEAS_01"
column = "XMEAS(01)"
role = "cv"
lo = 0.0
hi = 1.0
setpoint = 0.5
weight = 1.0

[[tags]]
name = "Feed"
unit = ""
role = "mv"
lo = 0.0
hi = 10.0
rate_limit = 1.0

[[tags]]
name = "F"
node = "ns=2;i=1001"
unit = "L/min"
role = "dv"
lo = 0
hi = 200
"""


def test_spec_without_nodes_or_units_loads_for_offline_use_and_round_trips() -> None:
    from twin.spec import spec_to_toml

    spec = parse_spec(OFFLINE, source="offline.toml")
    x, feed = spec.tag("XMEAS_01"), spec.tag("Feed")
    assert (x.node, x.unit, x.column) == (None, "", "XMEAS(01)")
    assert (feed.node, feed.write_node, feed.column) == (None, None, None)
    text = spec_to_toml(spec)
    assert "None" not in text and 'column = "XMEAS(01)"' in text
    assert parse_spec(text, source="offline.toml") == spec


def test_require_nodes_names_every_tag_the_plant_cannot_be_reached_for() -> None:
    spec = parse_spec(OFFLINE, source="offline.toml")
    with pytest.raises(SpecError) as err:
        spec.require_nodes("collect")
    msg = str(err.value)
    assert msg.startswith("offline.toml") and "cannot collect" in msg
    assert "['XMEAS_01', 'Feed'] have no 'node'" in msg and "write_node" not in msg
    with pytest.raises(SpecError, match=r"MVs \['Feed'\] have no 'write_node'"):
        spec.require_nodes("write")
    full = parse_spec(GOOD)
    full.require_nodes("collect")  # a spec with every node passes, for writing too
    full.require_nodes("write")
    no_write = parse_spec(GOOD.replace('write_node = "nsu=urn:demo:plant;s=Reactor.Tc.SP"', ""))
    no_write.require_nodes("collect")
    with pytest.raises(SpecError, match=r"cannot write .*MVs \['Tc'\]") as err:
        no_write.require_nodes("write")
    assert err.value.field == "write_node"


def test_two_tags_reading_one_export_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, OFFLINE.replace('name = "Feed"', 'name = "Feed"\ncolumn = "F"'))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert (err.value.tag, err.value.field) == ("F", "name")
    assert "export column 'F' is already read by tag 'Feed'" in str(err.value)


def test_twin_run_refuses_an_offline_spec_naming_the_tags(tmp_path, caplog, monkeypatch) -> None:
    import twin.cli

    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.run"])
    spec = write(tmp_path, OFFLINE)
    argv = ["run", "--spec", str(spec), "--model", str(tmp_path / "m")]
    argv += ["--historian", str(tmp_path / "h"), "--endpoint", "opc.tcp://127.0.0.1:1"]
    assert twin.cli.main([*argv, "--write"]) == 2
    assert "cannot write" in caplog.text and "['XMEAS_01', 'Feed'] have no 'node'" in caplog.text
    assert "MVs ['Feed'] have no 'write_node'" in caplog.text
    assert not (tmp_path / "h").exists()  # refused before anything was created


def test_make_tag_name_turns_column_names_into_valid_distinct_tags() -> None:
    from twin.spec import make_tag_name
    from twin.spec.plant import TAG_NAME

    cases = {"XMEAS(01)": "XMEAS_01", "Level %": "Level", "01 Temp": "T_01_Temp", "ts": "ts_"}
    for column, name in cases.items():
        assert make_tag_name(column) == name and TAG_NAME.match(name)
    assert make_tag_name("XMEAS(01)", {"XMEAS_01"}) == "XMEAS_01_2"
    assert len(make_tag_name("x" * 100)) == 64 and make_tag_name("°C") == "C"

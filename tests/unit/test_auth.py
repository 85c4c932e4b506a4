"""Sign-in and roles: the users file (``twin users``), who may do what, the sign-in box of the
operator app (run with AppTest), and ``twin dashboard`` refusing --approve beyond loopback
without a login."""

from __future__ import annotations

import io
import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import auth
from twin.cli import build_parser, main
from twin.cli.dashboard import _check, oidc_configured, streamlit_command
from twin.errors import TwinError
from twin.loop.audit import ApprovalQueue
from twin.loop.audit import current_user as os_user
from twin.users import PERMISSIONS, ROLES, UsersFile, UsersFileError, allowed

PASSWORDS = {"vera": "viewer-pass-1", "otto": "operator-pass-1", "erin": "engineer-pass-1"}
ROLE_OF = {"vera": "viewer", "otto": "operator", "erin": "engineer"}


def twin(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


@pytest.fixture
def users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A users file with a viewer, an operator and an engineer, made through the CLI."""
    path = tmp_path / "users.json"
    for name, password in PASSWORDS.items():
        argv = ["users", "add", name, "--role", ROLE_OF[name], "--file", str(path)]
        assert twin(monkeypatch, [*argv, "--password-stdin"], password + "\n") == 0
    return path


def test_users_round_trip_through_the_cli_keeps_only_salted_hashes_at_mode_0600(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = users.read_text()
    assert not any(p in text for p in PASSWORDS.values()), "a password is in the file"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    doc = json.loads(text)["users"]
    assert {n: e["role"] for n, e in doc.items()} == ROLE_OF
    assert doc["vera"]["password"]["kdf"] == "scrypt"
    assert doc["vera"]["password"]["salt"] != doc["otto"]["password"]["salt"]
    assert not list(users.parent.glob(".users.json*")), "a temporary file was left behind"
    capsys.readouterr()
    assert main(["users", "list", "--file", str(users)]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert listed == [[n, r, "password"] for n, r in sorted(ROLE_OF.items())]
    assert main(["users", "remove", "vera", "--file", str(users)]) == 0
    assert main(["users", "role", "otto", "engineer", "--file", str(users)]) == 0
    argv = ["users", "passwd", "erin", "--file", str(users), "--password-stdin"]
    assert twin(monkeypatch, argv, "a-new-password\n") == 0
    accounts = UsersFile(users).load()
    assert {n: a.role for n, a in accounts.items()} == {"otto": "engineer", "erin": "engineer"}
    assert UsersFile(users).verify("erin", "a-new-password") is not None
    assert UsersFile(users).verify("erin", PASSWORDS["erin"]) is None
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(users: Path) -> None:
    file = UsersFile(users)
    signed = file.verify("otto", PASSWORDS["otto"])
    assert signed is not None and signed.role == "operator"
    assert file.verify("otto", PASSWORDS["erin"]) is None
    assert file.verify("nobody", PASSWORDS["otto"]) is None
    oidc_only = file.add("carol@example.com", "operator", None)  # no local sign-in
    assert oidc_only.password is None and file.verify("carol@example.com", "") is None


def test_the_cli_refuses_bad_additions(
    users: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["users", "add", "otto", "--role", "viewer", "--file", str(users), "--password-stdin"]
    assert twin(monkeypatch, argv, "whatever-long\n") == 2
    assert "'otto' exists already" in caplog.text
    argv[2] = "newbie"
    assert twin(monkeypatch, argv, "short\n") == 2
    assert "at least 8 characters" in caplog.text
    with pytest.raises(SystemExit):  # argparse: not a role
        build_parser().parse_args(["users", "add", "x", "--role", "admin", "--file", "f"])
    assert set(UsersFile(users).load()) == set(PASSWORDS)


def test_a_corrupt_users_file_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"format": "process-twin users 1", "users": {"eve": {"role": "god"}}}')
    assert main(["users", "list", "--file", str(path)]) == 2
    assert f"users file {path} is corrupt" in caplog.text and "'god'" in caplog.text
    path.write_text("{not json")
    with pytest.raises(UsersFileError, match=re.escape(str(path))):
        UsersFile(path).verify("eve", "anything")
    args = build_parser().parse_args(["dashboard", "--historian", str(tmp_path)])
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsersFileError, match=re.escape(str(path))):  # the app does not start on it
        _check(args)


def test_roles_allow_what_the_issue_says() -> None:
    expected = {
        "viewer": {"view"},
        "operator": {"view", "acknowledge", "approve"},
        "engineer": {"view", "acknowledge", "approve", "whatif", "export", "settings"},
    }
    assert {r: {a for a in PERMISSIONS if allowed(r, a)} for r in ROLES} == expected
    assert set(auth.VERBS) == set(PERMISSIONS)
    with pytest.raises(ValueError, match="unknown action"):
        allowed("engineer", "delete")


def test_dashboard_refuses_approve_beyond_loopback_without_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Path, "home", lambda: tmp_path)  # no secrets.toml of the developer's
    monkeypatch.chdir(tmp_path)
    hist = tmp_path / "historian"
    hist.mkdir()
    base = ["dashboard", "--historian", str(hist), "--spec", "cstr"]
    assert main([*base, "--host", "0.0.0.0", "--approve"]) == 2
    assert "--approve on 0.0.0.0 would let anyone who reaches the app release writes" in caplog.text
    _check(build_parser().parse_args([*base, "--approve"]))  # loopback: a single-user station
    missing = build_parser().parse_args([*base, "--users", str(tmp_path / "none.json")])
    with pytest.raises(TwinError, match=r"none\.json does not exist"):
        _check(missing)
    # a users file beside the historian is a login
    UsersFile(hist / "users.json").add("otto", "operator", PASSWORDS["otto"])
    _check(build_parser().parse_args([*base, "--host", "0.0.0.0", "--approve"]))
    # so is OpenID Connect, configured in .streamlit/secrets.toml
    (hist / "users.json").unlink()
    assert not oidc_configured()
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "x"\n')
    assert oidc_configured()
    _check(build_parser().parse_args([*base, "--host", "0.0.0.0", "--approve"]))


# --- the sign-in box, in the app (AppTest) -------------------------------------------------


def _probe() -> None:
    """A page with the sign-in box and what this session may do."""
    import streamlit as st

    from dashboards import auth

    with st.sidebar:
        auth.sign_in_box()
    user = auth.current_user()
    st.markdown(f"user: {user.name} {user.role} {user.via}" if user else "user: none")
    st.markdown("may: " + (" ".join(a for a in auth.VERBS if auth.can(a)) or "nothing"))


def probe(monkeypatch: pytest.MonkeyPatch, users: Path | None) -> AppTest:
    monkeypatch.delenv("TWIN_HISTORIAN", raising=False)
    if users is None:
        monkeypatch.delenv(auth.USERS_ENV, raising=False)
    else:
        monkeypatch.setenv(auth.USERS_ENV, str(users))
    monkeypatch.setattr(auth, "FAIL_DELAY_S", 0.0)
    return AppTest.from_function(_probe, default_timeout=30)


def shown(at: AppTest) -> str:
    kinds = ("markdown", "caption", "error")
    return "\n".join(str(e.value) for k in kinds for e in at.get(k))


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="auth_name").set_value(name)
    at.text_input(key="auth_password").set_value(password)
    return at.button(key="auth_submit").click().run()


def test_without_a_login_this_machine_is_a_single_user_station(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = probe(monkeypatch, None).run()
    assert f"user: {os_user()} engineer station" in shown(at)
    assert "may: view acknowledge approve whatif export settings" in shown(at)
    assert "single-user station" in shown(at) and not at.text_input
    monkeypatch.setattr(auth, "on_this_machine", lambda: False)  # e.g. bound to 0.0.0.0
    at.run()
    assert "user: anonymous viewer anonymous\nmay: view\n" in shown(at)
    assert "view only" in shown(at)


@pytest.mark.parametrize("name", list(PASSWORDS))
def test_each_role_may_do_its_own_after_signing_in(
    users: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    at = probe(monkeypatch, users).run()
    assert "user: none\nmay: nothing" in shown(at)  # not even view
    sign_in(at, name, PASSWORDS[name])
    assert not at.exception, [e.message for e in at.exception]
    role = ROLE_OF[name]
    assert f"user: {name} {role} password" in shown(at)
    assert f"signed in: **{name}** ({role})" in shown(at)
    may = " ".join(a for a in PERMISSIONS if allowed(role, a))
    assert f"may: {may}\n" in shown(at)
    assert PASSWORDS[name] not in str(list(at.session_state.values())), "kept in the session"
    at.button(key="auth_sign_out").click().run()
    assert "user: none" in shown(at)


def test_wrong_name_or_password_get_one_message_and_removal_signs_out(
    users: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = probe(monkeypatch, users).run()
    sign_in(at, "otto", PASSWORDS["erin"])
    wrong_password = [e.value for e in at.error]
    sign_in(at, "nobody", PASSWORDS["otto"])
    assert wrong_password == [e.value for e in at.error] == [auth.WRONG]
    assert "user: none" in shown(at)
    sign_in(at, "otto", PASSWORDS["otto"])
    assert "user: otto operator" in shown(at)
    UsersFile(users).remove("otto")
    at.run()
    assert "user: none" in shown(at), "a removed user stays signed in"


def test_a_corrupt_users_file_is_named_in_the_sign_in_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.json"
    path.write_text("[]")
    at = probe(monkeypatch, path).run()
    assert f"users file {path} is corrupt" in shown(at) and "user: none" in shown(at)


def test_openid_connect_when_configured_else_the_users_file(
    users: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = probe(monkeypatch, users).run()  # no secrets: the local users file's form
    assert at.text_input(key="auth_password") and not [b for b in at.button if "login" in b.key]
    UsersFile(users).add("carol@example.com", "operator", None)
    at = probe(monkeypatch, users)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.text_input and "user: none" in shown(at)  # st.login's button, not the form
    at.user = {"is_logged_in": True, "email": "carol@example.com", "name": "Carol"}
    at.run()
    assert "user: carol@example.com operator oidc" in shown(at)
    at.user = {"is_logged_in": True, "email": "dave@example.com", "name": "Dave"}
    at.run()
    assert "user: dave@example.com viewer oidc" in shown(at)  # not in the file: a viewer


def test_the_users_file_reaches_the_app_from_twin_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = build_parser().parse_args(
        ["dashboard", "--historian", str(tmp_path), "--users", str(tmp_path / "u.json")]
    )
    cmd = streamlit_command(args, 8501)
    app_args = cmd[cmd.index("--") :]
    monkeypatch.setattr("sys.argv", ["dashboards/app.py", *app_args[1:]])
    monkeypatch.delenv(auth.USERS_ENV, raising=False)
    assert auth.users_path() == tmp_path / "u.json"
    monkeypatch.setattr("sys.argv", ["dashboards/app.py", "--historian", str(tmp_path)])
    assert auth.users_path() == tmp_path / "users.json"  # the default: beside the historian


def test_an_approval_carries_the_role_and_an_older_line_still_reads(tmp_path: Path) -> None:
    queue = ApprovalQueue(tmp_path)
    rec_ts = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    queue.approve(rec_ts, "otto", role="operator", via="password")
    old = {"ts": "2026-05-04T12:00:05+00:00", "rec_ts": "2026-05-04T12:01:00+00:00"}
    with (tmp_path / "approvals.jsonl").open("a") as f:
        f.write(json.dumps(old | {"operator": "al"}) + "\n")
    new, older = queue.pending()
    assert (new.operator, new.role, new.via) == ("otto", "operator", "password")
    assert new.why.endswith("by a signed-in operator (password)")
    assert (older.operator, older.role) == ("al", None)
    assert older.why == "approved at 2026-05-04T12:00:05+00:00"

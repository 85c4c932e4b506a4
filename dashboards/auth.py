"""Sign-in and roles of the operator app: who is signed in, and what they may do.

The pages ask :func:`can` (``"view"``, ``"acknowledge"``, ``"approve"``, ``"whatif"``,
``"export"``, ``"settings"``; see :data:`twin.users.PERMISSIONS`) and :func:`current_user` (for
the audit log); the app puts :func:`sign_in_box` in the sidebar. How one signs in, first match:

1. OpenID Connect, when ``.streamlit/secrets.toml`` has an ``[auth]`` section: ``st.login``;
   the role comes from the users file by the identity's email, else its name, else
   :data:`OIDC_DEFAULT_ROLE`.
2. The local users file (``--users FILE`` after ``--`` on the app's command line, else
   ``$TWIN_USERS``, else ``<historian>/users.json``; written by ``twin users``) when it exists:
   a name and password form. The sign-in lasts for the browser tab's session
   (``st.session_state``) and ends when the user is removed or the password changed.
3. No login configured: a session on this machine (the server bound to loopback, no proxy's
   forwarding header) is a single-user station, the OS user as engineer, as before there were
   logins; any other session is an anonymous viewer.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboards import data
from twin.loop.audit import current_user as os_user
from twin.users import PERMISSIONS, Account, UsersFile, UsersFileError, allowed, default_path

log = logging.getLogger(__name__)

#: environment variable naming the users file when the command line does not
USERS_ENV = "TWIN_USERS"
#: addresses a single-user station may be bound to
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: request headers a reverse proxy adds: a session with one came from beyond this machine
FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
#: role of an OpenID Connect identity that the users file does not name
OIDC_DEFAULT_ROLE = "viewer"
#: seconds a failed sign-in waits before it answers (slows guessing down)
FAIL_DELAY_S = 1.0
#: session-state key of the signed-in local user
KEY = "auth_user"
WRONG = "wrong name or password"
#: what each action is, for the reason a button is disabled
VERBS = {
    "view": "seeing the plant",
    "acknowledge": "acknowledging alarms",
    "approve": "approving a recommendation",
    "whatif": "running a what-if",
    "export": "downloading exports",
    "settings": "changing settings",
}


@dataclass(frozen=True)
class User:
    """Who is using this session."""

    name: str
    role: str
    """viewer | operator | engineer"""
    via: str
    """how they signed in: password | oidc | station (no login, loopback) | anonymous"""


def users_path() -> Path | None:
    """The users file: ``--users`` on the app's command line, ``$TWIN_USERS``, or the
    historian's ``users.json`` (None without a historian)."""
    explicit = _explicit_users()
    if explicit is not None:
        return explicit
    historian = data.app_config().historian
    return default_path(historian) if historian is not None else None


def _explicit_users() -> Path | None:
    value = None
    if sys.argv and Path(sys.argv[0]).name == data.APP_SCRIPT:  # under AppTest it is pytest's
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--users")
        value = p.parse_known_args(sys.argv[1:])[0].users
    value = value or os.environ.get(USERS_ENV)
    return Path(value) if value else None


def oidc_configured() -> bool:
    """Whether Streamlit's secrets have an ``[auth]`` section (OpenID Connect via ``st.login``)."""
    return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)


def on_this_machine() -> bool:
    """Whether this session is local: the server is bound to loopback (or there is no HTTP
    request at all, as under AppTest) and no reverse proxy forwarded the request."""
    headers = {k.lower() for k in st.context.headers}
    bound = st.get_option("server.address") in LOOPBACK or not headers
    return bound and not headers.intersection(FORWARDED)


def mode() -> str:
    """``oidc`` | ``password`` (users file) | ``station`` (no login, local) | ``open`` (no login,
    beyond this machine: view only)."""
    if oidc_configured():
        return "oidc"
    path = users_path()
    if _explicit_users() is not None or (path is not None and path.is_file()):
        return "password"
    return "station" if on_this_machine() else "open"


def _accounts() -> dict[str, Account]:
    """The users file's accounts, parsed again only when the file changes (pages may ask
    :func:`can` once per alarm row)."""
    path = users_path()
    try:
        info = path.stat() if path is not None else None
    except FileNotFoundError:
        info = None
    if path is None or info is None:
        return {}
    return _load(str(path), (info.st_ino, info.st_mtime_ns, info.st_size))


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: tuple[int, int, int]) -> dict[str, Account]:
    return UsersFile(path).load()


def fingerprint(account: Account) -> str:
    """Changes when the password does (the session keeps this, not the hash)."""
    digest = account.password.digest if account.password else b""
    return hashlib.sha256(digest).hexdigest()


def current_user() -> User | None:
    """The user of this session; None when nobody is signed in (or the users file is corrupt)."""
    how = mode()
    if how == "station":
        return User(os_user(), "engineer", "station")
    if how == "open":
        return User("anonymous", "viewer", "anonymous")
    try:
        accounts = _accounts()
    except UsersFileError:
        return None  # the sign-in box shows why
    if how == "oidc":
        if not st.user.get("is_logged_in"):
            return None
        ids = [str(v) for k in ("email", "name", "sub") if (v := st.user.get(k))]
        account = next((accounts[i] for i in ids if i in accounts), None)
        name = ids[0] if ids else "unknown"
        return User(name, account.role if account else OIDC_DEFAULT_ROLE, "oidc")
    signed = st.session_state.get(KEY)
    if not isinstance(signed, Mapping):
        return None
    account = accounts.get(str(signed.get("name")))
    if account is None or account.password is None or fingerprint(account) != signed.get("fp"):
        del st.session_state[KEY]  # removed, or the password changed: signed out
        return None
    return User(account.name, account.role, "password")


def can(action: str) -> bool:
    """Whether this session's user may do ``action`` (a key of :data:`VERBS`)."""
    user = current_user()
    return user is not None and allowed(user.role, action)


def why_not(action: str) -> str | None:
    """Why this session may not do ``action`` (for a disabled button); None when it may."""
    user = current_user()
    if user is not None and allowed(user.role, action):
        return None
    verb = VERBS[action]
    if user is None:
        return f"sign in for {verb}"
    if user.via == "anonymous":
        return (
            f"{verb.capitalize()} needs a sign-in: this app is reached beyond this machine and has "
            "no users (add them with `twin users add`)"
        )
    roles = " or ".join(PERMISSIONS[action])
    return f"{verb.capitalize()} needs the {roles} role: {user.name} is a {user.role}"


def sign_in(name: str, password: str) -> User | None:
    """Check ``name`` and ``password`` against the users file; the user, signed in, or None."""
    path = users_path()
    account = UsersFile(path).verify(name, password) if path is not None else None
    if account is None:
        time.sleep(FAIL_DELAY_S)
        log.warning("a sign-in failed: %s", WRONG)
        return None
    st.session_state[KEY] = {"name": account.name, "fp": fingerprint(account)}
    log.info("%s signed in as %s", account.name, account.role)
    return User(account.name, account.role, "password")


def sign_out() -> None:
    """End this session's sign-in (OpenID Connect: also Streamlit's identity cookie)."""
    st.session_state.pop(KEY, None)
    if mode() == "oidc":
        st.logout()


def sign_in_box() -> None:
    """The sidebar's sign-in: who is signed in and a sign-out, else a way to sign in."""
    how = mode()
    if how == "station":
        st.caption(f"single-user station: {os_user()} (engineer); no sign-in on this machine")
        return
    if how == "open":
        st.caption("no sign-in configured: view only (add users with `twin users add`)")
        return
    try:
        _accounts()
    except UsersFileError as exc:
        st.error(str(exc))
        return
    user = current_user()
    if user is not None:
        st.caption(f"signed in: **{user.name}** ({user.role})")
        if st.button("Sign out", key="auth_sign_out"):
            sign_out()
            st.rerun()
    elif how == "oidc":
        _oidc_buttons()
    else:
        _password_form()


def _password_form() -> None:
    path = users_path()
    if path is None or not path.is_file():
        st.error(f"users file {path} does not exist: add users with `twin users add`")
        return
    with st.form("auth_form", clear_on_submit=True):
        name = st.text_input("name", key="auth_name", autocomplete="username")
        password = st.text_input(
            "password", type="password", key="auth_password", autocomplete="current-password"
        )
        if st.form_submit_button("Sign in", key="auth_submit"):
            if sign_in(name.strip(), password) is None:
                st.error(WRONG)
            else:
                st.rerun()


def _oidc_buttons() -> None:
    if importlib.util.find_spec("authlib") is None:
        st.error("OpenID Connect sign-in needs Authlib: pip install 'streamlit[auth]'")
        return
    section = st.secrets["auth"]
    providers = [k for k, v in section.items() if isinstance(v, Mapping)]
    for provider in providers or [None]:
        label = f"Sign in with {provider}" if provider else "Sign in"
        if st.button(label, key=f"auth_login_{provider or 'default'}"):
            st.login(provider)

"""Who may do what in the operator app: roles, and the local users file with hashed passwords.

Roles, each with everything of the one before:

- ``viewer``: sees every page;
- ``operator``: also acknowledges alarms and approves a recommendation for write-back;
- ``engineer``: also runs what-ifs, downloads exports and changes settings.

The users file (JSON, default ``<historian>/users.json``, written by ``twin users``) holds each
user's name, role and, for a local sign-in, a salted scrypt hash of the password, never the
password. An entry without a hash only gives an OpenID Connect identity (its email or name) a
role. The file is replaced atomically and kept at mode 0600. Checking a password costs one
scrypt whatever the name, and compares in constant time, so a wrong name and a wrong password
look alike.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.store.jsonl import fsync_path
from twin.times import now_utc

log = logging.getLogger(__name__)

#: the roles, least to most allowed
ROLES = ("viewer", "operator", "engineer")
#: action -> the roles that may do it
PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "view": ROLES,
    "acknowledge": ("operator", "engineer"),
    "approve": ("operator", "engineer"),
    "whatif": ("engineer",),
    "export": ("engineer",),
    "settings": ("engineer",),
}
#: file name of the users file inside a historian folder
USERS_FILE = "users.json"
#: first line of the file's format
FORMAT = "process-twin users 1"
#: scrypt cost: N = 2**15, r = 8, p = 1 takes 32 MiB and about 0.1 s per check
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
#: passwords shorter than this are refused
MIN_PASSWORD = 8


class UsersFileError(TwinError, ValueError):
    """The users file cannot be read or a change to it is refused; the message names the file."""


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (one of :data:`PERMISSIONS`; another is a ValueError)."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(PERMISSIONS)}")
    return role in PERMISSIONS[action]


def check_name(name: str) -> str:
    """``name`` if it is a usable user name (printable, no spaces, 1 to 128 characters)."""
    if not 0 < len(name) <= 128 or not name.isprintable() or any(c.isspace() for c in name):
        raise TwinError(f"bad user name {name!r}: 1 to 128 printable characters, no spaces")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise TwinError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PasswordHash:
    """A salted scrypt hash and its parameters (stored with it, so they may be raised later)."""

    salt: bytes
    digest: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def make(cls, password: str) -> PasswordHash:
        """A new hash of ``password`` with a fresh random salt."""
        if len(password) < MIN_PASSWORD:
            raise TwinError(f"a password needs at least {MIN_PASSWORD} characters")
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def matches(self, password: str) -> bool:
        """Whether ``password`` is the one hashed (constant-time comparison)."""
        got = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(got, self.digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "kdf": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": _b64(self.salt),
            "hash": _b64(self.digest),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PasswordHash:
        if d.get("kdf") != "scrypt":
            raise ValueError(f"unknown kdf {d.get('kdf')!r}")
        n, r, p = (int(d[k]) for k in ("n", "r", "p"))
        if n < 2 or n & (n - 1) or not 0 < r * p < 2**30:
            raise ValueError(f"bad scrypt parameters n={n}, r={r}, p={p}")
        return cls(base64.b64decode(d["salt"]), base64.b64decode(d["hash"]), n, r, p)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int = HASH_BYTES) -> bytes:
    mem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=mem, dklen=size)


@cache
def _dummy() -> PasswordHash:
    """A hash to check unknown names against, so that they cost as much as known ones."""
    return PasswordHash.make(secrets.token_hex(16))


@dataclass(frozen=True)
class Account:
    """One entry of the users file."""

    name: str
    role: str
    password: PasswordHash | None = None
    """None: no local sign-in (the name is an OpenID Connect email or name)"""


def default_path(historian: str | Path) -> Path:
    """Where the app looks for users when not told: ``<historian>/users.json``."""
    return Path(historian) / USERS_FILE


class UsersFile:
    """The users file at ``path``: read, changed (atomically, mode 0600), passwords checked."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, Account]:
        """Every user by name; {} when there is no file. UsersFileError names a corrupt file."""
        try:
            text = self.path.read_text(encoding="utf-8")
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsersFileError(f"users file {self.path}: cannot read it: {exc}") from exc
        if mode & 0o077:
            log.warning("users file %s is readable by others: chmod 600 it", self.path)
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a users file (no 'format': {FORMAT!r})")
            out = {}
            for name, entry in doc["users"].items():
                pw = entry.get("password")
                out[name] = Account(
                    check_name(name),
                    check_role(entry["role"]),
                    None if pw is None else PasswordHash.from_json(pw),
                )
        except (ValueError, TypeError, KeyError, AttributeError, TwinError) as exc:
            raise UsersFileError(f"users file {self.path} is corrupt: {exc}") from exc
        return out

    def save(self, users: Mapping[str, Account]) -> None:
        """Replace the file with ``users``: a temporary file at mode 0600, fsynced, renamed."""
        doc = {
            "format": FORMAT,
            "changed": now_utc().isoformat(),
            "users": {
                u.name: {
                    "role": u.role,
                    "password": None if u.password is None else u.password.to_json(),
                }
                for u in sorted(users.values(), key=lambda u: u.name)
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when a stale temporary file was there
            os.write(fd, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_path(self.path.parent)

    def add(self, name: str, role: str, password: str | None) -> Account:
        """A new user (``password`` None: OpenID Connect only); an existing name is refused."""
        users = self.load()
        if check_name(name) in users:
            raise UsersFileError(f"users file {self.path}: {name!r} exists already")
        user = Account(
            name, check_role(role), None if password is None else PasswordHash.make(password)
        )
        self.save({**users, name: user})
        return user

    def _change(self, name: str, **fields: Any) -> Account:
        users = self.load()
        if name not in users:
            raise UsersFileError(f"users file {self.path}: no user {name!r}")
        users[name] = user = dataclasses.replace(users[name], **fields)
        self.save(users)
        return user

    def set_password(self, name: str, password: str) -> Account:
        return self._change(name, password=PasswordHash.make(password))

    def set_role(self, name: str, role: str) -> Account:
        return self._change(name, role=check_role(role))

    def remove(self, name: str) -> None:
        users = self.load()
        if users.pop(name, None) is None:
            raise UsersFileError(f"users file {self.path}: no user {name!r}")
        self.save(users)

    def verify(self, name: str, password: str) -> Account | None:
        """The user if ``name`` has a local password and it is ``password``; else None.

        One scrypt whatever the name (an unknown one is checked against a dummy hash), so a
        wrong name and a wrong password take the same time and give the same answer.
        """
        user = self.load().get(name)
        stored = user.password if user is not None else None
        ok = (stored or _dummy()).matches(password)
        return user if ok and stored is not None else None

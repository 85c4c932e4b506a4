"""``twin users add | list | remove | passwd | role``: the operator app's local users file.

The file is ``<historian>/users.json`` (``--historian DIR``, else ``$TWIN_HISTORIAN``) unless
``--file F`` names another; ``twin dashboard --users F`` points the app at the same one.
Passwords are asked twice without echo, or read as one line from stdin with
``--password-stdin`` (for scripts); only their salted scrypt hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from twin.errors import TwinError

HISTORIAN_ENV = "TWIN_HISTORIAN"


def register(sub: argparse._SubParsersAction) -> None:
    from twin.users import ROLES

    p = sub.add_parser(
        "users",
        help="manage the operator app's users (names, roles, passwords)",
        description="Manage the local users file of the operator app: viewer (sees), operator "
        "(also acknowledges alarms, approves recommendations), engineer (also what-if, exports, "
        "settings). The file is <historian>/users.json unless --file names another.",
    )
    cmds = p.add_subparsers(dest="users_command", metavar="COMMAND", required=True)

    Handler = Callable[[argparse.Namespace], int]

    def command(
        name: str, help: str, func: Handler, *, user: bool = True
    ) -> argparse.ArgumentParser:
        c = cmds.add_parser(name, help=help, description=help)
        if user:
            c.add_argument("name", metavar="NAME", help="user name (or OpenID Connect email)")
        where = c.add_mutually_exclusive_group()
        where.add_argument("--historian", type=Path, metavar="DIR", help="its users.json")
        where.add_argument("--file", type=Path, metavar="F", help="the users file itself")
        c.set_defaults(func=func)
        return c

    add = command("add", "add a user with a role and a password", _add)
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    secret.add_argument(
        "--no-password",
        action="store_true",
        help="no local sign-in: NAME is an OpenID Connect email or name given this role",
    )
    command("list", "list the users and their roles", _list, user=False)
    command("remove", "remove a user", _remove)
    passwd = command("passwd", "set a user's password", _passwd)
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    role = command("role", "change a user's role", _role)
    role.add_argument("role", choices=ROLES, metavar="ROLE", help=" | ".join(ROLES))


def users_path(args: argparse.Namespace) -> Path:
    """The users file the arguments name: --file, else <--historian or $TWIN_HISTORIAN>/users.json."""
    from twin.users import default_path

    if args.file is not None:
        return Path(args.file)
    historian = args.historian or os.environ.get(HISTORIAN_ENV)
    if not historian:
        raise TwinError(f"which users file? give --historian DIR, --file F or set {HISTORIAN_ENV}")
    return default_path(historian)


def read_password(from_stdin: bool) -> str:
    """One line of stdin, or asked twice on the terminal (the two must agree)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise TwinError("the two passwords differ: nothing changed")
    if not password:
        raise TwinError("empty password: nothing changed")
    return password


def _add(args: argparse.Namespace) -> int:
    from twin.users import UsersFile, check_name

    users = UsersFile(users_path(args))
    check_name(args.name)
    if args.name in users.load():  # before asking for a password
        raise TwinError(f"users file {users.path}: {args.name!r} exists already")
    password = None if args.no_password else read_password(args.password_stdin)
    users.add(args.name, args.role, password)
    how = "OpenID Connect only" if password is None else "password set"
    print(f"added {args.name} ({args.role}, {how}) to {users.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from twin.users import UsersFile

    users = UsersFile(users_path(args))
    accounts = users.load()
    if not accounts:
        print(f"no users in {users.path}")
    for a in accounts.values():
        print(f"{a.name}\t{a.role}\t{'password' if a.password else 'OpenID Connect only'}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from twin.users import UsersFile

    users = UsersFile(users_path(args))
    users.remove(args.name)
    print(f"removed {args.name} from {users.path}")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    from twin.users import UsersFile

    users = UsersFile(users_path(args))
    if args.name not in users.load():
        raise TwinError(f"users file {users.path}: no user {args.name!r}")
    users.set_password(args.name, read_password(args.password_stdin))
    print(f"password of {args.name} changed in {users.path}")
    return 0


def _role(args: argparse.Namespace) -> int:
    from twin.users import UsersFile

    users = UsersFile(users_path(args))
    users.set_role(args.name, args.role)
    print(f"{args.name} is now {args.role} in {users.path}")
    return 0

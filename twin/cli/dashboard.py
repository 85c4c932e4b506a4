"""``twin dashboard``: start the operator app (Streamlit) on 127.0.0.1.

Runs ``python -m dashboards.serve run dashboards/app.py`` (``streamlit run`` with the code imported first) as a child process with the app's grey
theme, the viewer toolbar, no usage statistics and no file watcher, prints the URL once the
server answers, and stops it on Ctrl-C or SIGTERM.

Sign-in (see :mod:`dashboards.auth`): OpenID Connect when a ``.streamlit/secrets.toml`` has an
``[auth]`` section, else the users file (``--users``, default ``<historian>/users.json``) when
it exists, else none: then ``--approve`` is refused beyond loopback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from twin.cli.args import add_historian_arg
from twin.errors import TwinError

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
#: seconds to wait for the server to answer its health check
START_TIMEOUT = 60.0
#: seconds the app may take to stop before it is killed
STOP_TIMEOUT = 10.0
#: addresses that only this machine reaches
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    from twin.cli.args import positive_float

    p = sub.add_parser(
        "dashboard",
        help="start the operator app in the browser (127.0.0.1 by default)",
        description="Start the Streamlit operator app on the historian in DIR (written by `twin "
        "collect` or `twin run`) and, optionally, a saved twin. The app only reads files: it "
        "opens no OPC-UA session. Stops on Ctrl-C.",
    )
    add_historian_arg(p)
    p.add_argument("--model", type=Path, help="saved twin folder (forecast, what-if, model pages)")
    p.add_argument("--spec", help="plant spec (TOML file or built-in name) when no --model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8501, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--refresh",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="Plant page refresh interval, 1 to 5 s (default 2)",
    )
    p.add_argument(
        "--approve",
        action="store_true",
        help="approval mode: the Recommendations page gets an approve button (write-back); "
        "beyond loopback only with a login (users file or OpenID Connect)",
    )
    p.add_argument(
        "--users",
        type=Path,
        metavar="FILE",
        help="users file for the sign-in (default: <historian>/users.json; `twin users add`)",
    )
    p.set_defaults(func=_dashboard)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def streamlit_command(args: argparse.Namespace, port: int) -> list[str]:
    """The ``python -m dashboards.serve run`` command line for ``args``.

    :mod:`dashboards.serve` is ``streamlit run`` with the pages' code (and the twin's, with a
    model) imported before the server listens, so the first page opened is not the slow one.
    """
    from dashboards.style import THEME

    cmd = [
        sys.executable,
        "-m",
        "dashboards.serve",
        "run",
        str(APP),
        "--server.address",
        args.host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--runner.postScriptGC",  # a full collection after every refresh costs ~0.5 s of CPU
        "false",
        "--client.toolbarMode",
        "viewer",
        "--browser.gatherUsageStats",
        "false",
    ]
    for key, value in THEME.items():
        cmd += [f"--theme.{key}", value]
    cmd += ["--", "--historian", str(args.historian), "--refresh", f"{args.refresh:g}"]
    if args.model is not None:
        cmd += ["--model", str(args.model)]
    if args.spec:
        cmd += ["--spec", args.spec]
    if args.approve:
        cmd += ["--approve"]
    if getattr(args, "users", None) is not None:
        cmd += ["--users", str(args.users)]
    return cmd


def oidc_configured(cwd: Path | None = None) -> bool:
    """Whether a ``secrets.toml`` Streamlit reads (``~/.streamlit/``, ``./.streamlit/``) has an
    ``[auth]`` section: the app then signs in with OpenID Connect (``st.login``)."""
    import tomllib

    for folder in (Path.home(), cwd or Path.cwd()):
        path = folder / ".streamlit" / "secrets.toml"
        try:
            if "auth" in tomllib.loads(path.read_text(encoding="utf-8")):
                return True
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TwinError(f"{path}: cannot read it: {exc}") from exc
    return False


def login(args: argparse.Namespace) -> str | None:
    """How the app signs users in: "OpenID Connect", "users file F", or None (no login)."""
    from twin.users import UsersFile, default_path

    if oidc_configured():
        return "OpenID Connect"
    path = args.users if args.users is not None else default_path(args.historian)
    if args.users is not None and not path.is_file():
        raise TwinError(f"users file {path} does not exist: create it with `twin users add`")
    if not path.is_file():
        return None
    UsersFile(path).load()  # UsersFileError names a corrupt file
    return f"users file {path}"


def _check(args: argparse.Namespace) -> None:
    """TwinError naming what is wrong before anything starts."""
    if not args.historian.is_dir():
        raise TwinError(f"historian folder {args.historian} does not exist")
    if args.model is not None and not (args.model / "config.json").is_file():
        raise TwinError(f"{args.model} is not a saved twin (no config.json)")
    if args.model is None and args.spec:
        from twin.spec import spec_from_arg

        spec_from_arg(args.spec)  # SpecError names the fault
    if not 1.0 <= args.refresh <= 5.0:
        raise TwinError(f"--refresh must be 1 to 5 s, got {args.refresh:g}")
    how = login(args)
    if how is not None:
        log.info("sign-in: %s", how)
    elif args.host not in LOOPBACK and args.approve:
        raise TwinError(
            f"--approve on {args.host} would let anyone who reaches the app release writes: "
            "add users (`twin users add NAME --role operator --historian DIR`), configure "
            "OpenID Connect ([auth] in .streamlit/secrets.toml), or bind 127.0.0.1"
        )
    elif args.host not in LOOPBACK:
        log.warning(
            "the app binds %s with no login: anyone who reaches it sees the plant, and nobody "
            "may act (add users with `twin users add`)",
            args.host,
        )


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = START_TIMEOUT) -> bool:
    """True once ``url``/_stcore/health answers ok; False if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM when ``twin dashboard`` dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _dashboard(args: argparse.Namespace) -> int:
    _check(args)
    port = args.port or free_port(args.host)
    url = f"http://{args.host}:{port}"
    # Ctrl-C stops the app even where the shell started us with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(
        streamlit_command(args, port), stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )

    def stop(_signum: int, _frame: Any) -> None:
        proc.terminate()  # Streamlit stops promptly on SIGTERM

    signal.signal(signal.SIGTERM, stop)
    try:
        if wait_ready(url, proc):
            print(f"twin dashboard: {url}  (Ctrl-C stops it)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how the app is stopped: the child is stopped below
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("the app did not stop within %g s: killing it", STOP_TIMEOUT)
                proc.kill()
                proc.wait()

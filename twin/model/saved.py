"""A saved twin's folder: the files :meth:`Twin.save <twin.model.twin.Twin.save>` writes, JSON
reads and writes, and the SHA-256 checksums a load verifies.

``FILES`` must all be there; ``CHECKSUMS`` (``checksums.json``) records the SHA-256 of
``CHECKSUMMED`` as saved, so a load refuses one damaged or replaced since, naming it. Every
failure is a :class:`~twin.errors.TwinError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twin.errors import TwinError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

FILES = ("model.pt", "config.json", "spec.toml", "normalizer.json", "calibration.json")
#: SHA-256 of the binary and JSON files as saved: a load refuses one damaged since. spec.toml
#: is left out: people edit it (units, descriptions), and parsing it checks it
CHECKSUMS = "checksums.json"
CHECKSUMMED = ("model.pt", "config.json", "normalizer.json", "calibration.json")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        raise TwinError(f"cannot read {path}: {exc}") from exc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify_checksums(folder: Path) -> None:
    """TwinError naming the first file whose SHA-256 differs from the one Twin.save recorded.

    Folders saved before checksums were written have no ``checksums.json``: nothing to verify.
    """
    path = folder / CHECKSUMS
    if not path.is_file():
        log.debug("%s has no %s: its files are not verified", folder, CHECKSUMS)
        return
    recorded = _read_json(path)
    if not isinstance(recorded, dict):
        raise TwinError(f"{path} must hold a JSON object of file name -> SHA-256")
    for name in CHECKSUMMED:
        if name in recorded and _sha256(folder / name) != recorded[name]:
            raise TwinError(
                f"{folder / name} is damaged or was replaced: its SHA-256 differs from the one "
                f"Twin.save recorded in {CHECKSUMS}"
            )


def _from_json(path: Path, build: Callable[[Any], _T]) -> _T:
    """``build`` applied to the JSON in ``path``; TwinError naming the file if it does not fit."""
    data = _read_json(path)
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise TwinError(
            f"{path} does not hold what Twin.save writes there ({type(exc).__name__}: {exc})"
        ) from exc

"""A saved twin whose files were replaced by garbage: a clear error naming the file, never a
torch or pickle traceback, from the library and from ``twin recommend``."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twin.errors import TwinError
from twin.model.twin import CHECKSUMMED, Twin

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "data" / "models" / "cstr"
FILES = ("model.pt", "config.json", "spec.toml", "normalizer.json", "calibration.json")


def _damage(path: Path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "random":  # replaced by garbage of about its size
        path.write_bytes(rng.randbytes(max(64, len(data))))
    elif how == "truncated":  # a copy or a write cut short
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":  # a few bytes damaged in place
        raw = bytearray(data)
        for i in rng.sample(range(len(raw)), k=min(16, len(raw))):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        raise AssertionError(how)


@pytest.fixture(scope="module")
def model() -> Path:
    if not (MODEL / "model.pt").is_file():
        pytest.fail(f"the shipped demo model {MODEL} is missing: train it with `make demo`")
    return MODEL


@pytest.mark.parametrize("how", ["random", "truncated", "empty"])
@pytest.mark.parametrize("name", FILES)
def test_damaged_model_file_is_named_in_a_twin_error(
    model: Path, tmp_path: Path, name: str, how: str
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    _damage(folder / name, how, random.Random(f"{name}{how}"))
    with pytest.raises(TwinError) as info:
        Twin.load(folder)
    assert name in str(info.value), str(info.value)
    assert str(folder) in str(info.value), str(info.value)


def test_bytes_flipped_in_place_are_caught_by_the_saved_checksums(
    model: Path, tmp_path: Path
) -> None:
    """torch reads a weights file with a few bytes flipped in its tensors without complaint;
    the checksums Twin.save records catch it, and catch the JSON files too (spec.toml is
    checked by parsing)."""
    saved = Twin.load(model).save(tmp_path / "saved")
    assert Twin.load(saved).horizon > 0  # the untouched copy loads
    for name in CHECKSUMMED:
        folder = tmp_path / name
        shutil.copytree(saved, folder)
        _damage(folder / name, "flipped", random.Random(name))
        with pytest.raises(TwinError, match=f"{folder / name} is damaged or was replaced"):
            Twin.load(folder)


def test_recommend_with_a_garbage_model_exits_2_naming_the_file(
    model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    (folder / "model.pt").write_bytes(os.urandom(4096))
    historian = tmp_path / "hist"
    historian.mkdir()
    out = tmp_path / "rec.json"
    cmd = [sys.executable, "-m", "twin.cli", "recommend", "--model", str(folder)]
    proc = subprocess.run(
        [*cmd, "--historian", str(historian), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{folder}/model.pt is not a readable weights file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()

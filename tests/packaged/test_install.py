"""A non-editable install works on its own: no top-level ``workers``/``train``, the manifest is package
data, and ``emostream replay synth`` + ``replay meld`` run from it with no environment variable set.

The fresh venv gets the dependencies through a ``.pth`` line naming this interpreter's site-packages
(nothing is downloaded); emostream itself is built and installed from the checkout, not linked to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "meld" / "dev_sample.csv"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "emostream-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", str(REPO)], check=True, env=_clean_env())
    assert (site / "emostream" / "store" / "manifest.toml").is_file()
    return venv


def _clean_env() -> dict[str, str]:
    """The caller's environment without PYTHONPATH or any EMOSTREAM_* variable."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("EMOSTREAM_")}


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_install_has_no_top_level_workers_or_train(installed: Path, tmp_path: Path) -> None:
    py = str(installed / "bin" / "python")
    for name in ("workers", "train"):
        proc = _run(installed, py, "-c", f"import {name}", cwd=tmp_path)
        assert proc.returncode != 0 and f"No module named '{name}'" in proc.stderr
    code = "import emostream.workers.asr, emostream.store.manifest as m; print(m.load_manifest().path)"
    proc = _run(installed, py, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(installed)  # the packaged manifest, not the checkout's


@pytest.mark.slow
def test_replay_synth_and_meld_run_from_the_install(installed: Path, tmp_path: Path) -> None:
    exe = str(installed / "bin" / "emostream")
    root, out = tmp_path / "root", tmp_path / "out"
    synth = _run(
        installed,
        exe,
        "replay",
        "synth",
        "--csv",
        str(FIXTURE),
        "--dialogues",
        "1",
        "--out",
        str(root),
        cwd=tmp_path,
    )
    assert synth.returncode == 0, synth.stderr
    meld = _run(
        installed,
        exe,
        "replay",
        "meld",
        "--root",
        str(root),
        "--split",
        "dev",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert meld.returncode == 0, meld.stderr
    assert "weighted-F1" in meld.stdout and (out / "report.md").is_file()

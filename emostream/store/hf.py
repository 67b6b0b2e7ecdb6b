"""Hugging Face source: only used when a user asks for it (``--source hf``), never by default.

Files are fetched at the pinned commit with ``huggingface_hub`` (imported here, lazily) into the store's
own cache, then copied into staging and verified like any other source. ``HF_ENDPOINT`` (read at
call time) points it at a mirror.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from emostream.errors import UserError
from emostream.store.manifest import HfSource, ModelEntry
from emostream.store.progress import Reporter


def fetch_hf(entry: ModelEntry, source: HfSource, staging: Path, cache: Path, reporter: Reporter) -> None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError("--source hf needs huggingface_hub: pip install huggingface_hub") from None
    endpoint = os.environ.get("HF_ENDPOINT") or None
    for rel in entry.files:
        target = staging / rel
        if target.exists():
            continue
        remote = source.files.get(rel, rel)
        reporter.note(f"  hf {source.repo}@{source.revision[:10]} {remote}")
        try:
            local = hf_hub_download(
                source.repo, remote, revision=source.revision, cache_dir=str(cache), endpoint=endpoint
            )
        except Exception as exc:  # network, auth, missing file: all reported as one line
            raise UserError(
                f"could not fetch {remote} from {source.repo}: {type(exc).__name__}: {exc}"
            ) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        shutil.copyfile(local, part)
        os.replace(part, target)

"""Model store: every model file emostream runs comes from here, verified by sha256, never downloaded at
run time. Stages call ``load(name) -> Path``; ``emostream models pull NAME`` puts a model there.
"""

from __future__ import annotations

from emostream.store.core import Store, load
from emostream.store.manifest import ManifestError, ModelEntry, load_manifest

__all__ = ["ManifestError", "ModelEntry", "Store", "load", "load_manifest"]

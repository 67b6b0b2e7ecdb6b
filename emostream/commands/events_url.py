"""`emostream events --url`: follow a room on `emostream serve` with the Python client.

In a terminal it shows a live table, one row per speaker (latest label, confidence, transcript, counts);
piped it writes JSON lines. "waiting for events in room R..." goes to stderr so pipes stay clean, and so
does one line per dropped utterance (the server's ``event: dropped`` records: reason, utterance,
speaker); the table shows those lines above it and counts them per speaker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter

from emostream import schema
from emostream.errors import UserError
from emostream.late_fusion import driver_of


def follow_url(args: argparse.Namespace) -> int:
    if not args.room or not args.token:
        raise UserError(
            "--url needs --room R and --token T (mint one with `emostream token create`)", exit_code=2
        )
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    try:
        return asyncio.run(_follow(args, fmt))
    except OSError as exc:
        raise UserError(f"cannot reach {args.url} ({exc}): is `emostream serve` running there?") from None


async def _follow(args: argparse.Namespace, fmt: str) -> int:
    from emostream.client import ClientError, subscribe
    from emostream.commands.events import dropped_line

    print(f"waiting for events in room {args.room}...", file=sys.stderr, flush=True)
    table = _Table(args.room) if fmt == "table" else None
    printed = 0
    try:
        async for event in subscribe(args.url, args.room, args.token, since=args.since, dropped=True):
            if isinstance(event, schema.Dropped):
                if table is not None:
                    table.dropped(event, dropped_line(event))
                else:
                    print(dropped_line(event), file=sys.stderr, flush=True)
                continue
            if table is not None:
                table.add(event)
            else:
                sys.stdout.write(schema.to_json(event).decode() + "\n")
                sys.stdout.flush()
            printed += 1
            if args.count is not None and printed >= args.count:
                break
    except ClientError as exc:
        raise UserError(f"{args.url} refused the subscription: {exc.reason}") from None
    finally:
        if table is not None:
            table.close()
    return 0


class _Table:
    """A rich Live table, one row per speaker."""

    def __init__(self, room: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.room = room
        self.latest: dict[str, schema.EmotionEvent] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.live = Live(self._render(), console=Console(), refresh_per_second=8)
        self.live.start()

    def add(self, event: schema.EmotionEvent) -> None:
        self.latest[event.speaker] = event
        self.counts.setdefault(event.speaker, Counter())[event.label] += 1
        self.live.update(self._render())

    def dropped(self, record: schema.Dropped, line: str) -> None:
        self.counts.setdefault(record.speaker, Counter())["dropped"] += 1
        self.live.console.print(line, markup=False, highlight=False)
        self.live.update(self._render())

    def _render(self):  # type: ignore[no-untyped-def]
        from rich.table import Table

        t = Table(title=f"room {self.room}", expand=True)
        for col in ("speaker", "label", "conf", "driver", "said", "so far"):
            t.add_column(col, overflow="fold")
        for speaker, e in sorted(self.latest.items()):
            so_far = ", ".join(f"{k} {v}" for k, v in self.counts[speaker].most_common(3))
            driver = e.driver or driver_of(e)  # events from servers before the field: same rule here
            t.add_row(speaker, e.label, f"{e.confidence:.2f}", driver, e.transcript.strip()[-80:], so_far)
        return t

    def close(self) -> None:
        self.live.stop()

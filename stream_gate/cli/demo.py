"""``stream-gate demo``: the gate on a built-in sample clip with an embedded Redis.

Prints a table of the tracks and what each emitted, writes a contact sheet of the
emitted crops and the review page (``stream-gate review``) of every scored crop.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from stream_gate.cli.run import apply_outputs, finished, run_gate
from stream_gate.config import load_settings
from stream_gate.demo import render_sample_clip
from stream_gate.pipeline.observe import RunReport
from stream_gate.service.review import write_review
from stream_gate.types import Emission


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="stream-gate-demo-") as tmp:
        source = args.source
        if source is None:
            print("rendering the sample clip (8 s, 640×360) ...", file=sys.stderr)
            source = str(render_sample_clip(Path(tmp) / "sample.mp4"))
        defaults = {
            "redis": {"url": "embedded"},
            "select": {"top_k": 3},
            "streams": [{"id": "demo", "url": source, "fps": args.fps}],
        }
        settings = load_settings(args.config, defaults)
        apply_outputs(settings, args)
        kept = settings.output.dir  # the user's own folder of emitted crops, if any
        # The review page reads every scored crop and marks the emitted ones.
        if settings.output.dump_scored is None:
            settings.output.dump_scored = Path(tmp) / "scored"
        if settings.output.dir is None:
            settings.output.dir = Path(tmp) / "emitted"
        t0 = time.perf_counter()
        report, sink = run_gate(settings, args.duration, collect=True)
        print(track_table(report))
        if settings.select.consensus_weight:
            print(f"(each person's crops ranked by quality + {settings.select.consensus_weight:g}"
                  " points per percent of agreement with the rest of the track, "
                  "select.consensus_weight: the crop sent need not have the best q)")
        sheet = contact_sheet(report.emissions, args.sheet)
        print(
            f"\n{report.frames} frames, {report.faces} faces, {report.scored} scored, "
            f"{report.emitted} crops emitted, {sink.published} published to Redis "
            f"({settings.redis.url} key {settings.redis.key!r}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        print(f"contact sheet: {sheet}" if sheet else "no crops emitted: no contact sheet")
        if report.scored:
            page = write_review(settings.output.dump_scored, settings.output.dir, settings,
                                args.review)
            print(f"review page: {page}")
        if kept is not None:
            print(f"crops and metadata: {kept}")
    return finished(report, sink)


def track_table(report: RunReport) -> str:
    """A plain-text table: one row per confirmed track."""
    rows = [("stream", "track", "hits", "scored", "best q", "emitted")]
    for (sid, tid), t in sorted(report.tracks.items()):
        if not t.confirmed:
            continue
        emitted = ", ".join(f"{e.reason}#{e.rank} q={e.candidate.quality:.1f}" for e in t.emitted)
        best = f"{t.best_quality:.1f}" if t.scored else "-"
        rows.append((sid, str(tid), str(t.hits), str(t.scored), best, emitted or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def contact_sheet(emissions: Iterable[Emission], path: Path, cols: int = 8) -> Path | None:
    """A PNG grid of emitted crops, each labelled with stream, track and quality."""
    ems = sorted(emissions, key=lambda e: (e.candidate.stream_id, e.candidate.track_id, e.rank))
    if not ems:
        return None
    tile, label_h = 112, 30
    cols = min(cols, len(ems))
    rows = math.ceil(len(ems) / cols)
    sheet = np.full((rows * (tile + label_h), cols * tile, 3), 255, np.uint8)
    for i, em in enumerate(ems):
        r, c = divmod(i, cols)
        y, x = r * (tile + label_h), c * tile
        sheet[y : y + tile, x : x + tile] = em.candidate.crop
        for j, text in enumerate(
            (f"{em.candidate.stream_id} t{em.candidate.track_id}",
             f"q={em.candidate.quality:.1f} {em.reason}")
        ):
            cv2.putText(sheet, text, (x + 3, y + tile + 12 + 13 * j), cv2.FONT_HERSHEY_SIMPLEX,
                        0.33, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"cannot write {path}")
    return path

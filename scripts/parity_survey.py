#!/usr/bin/env python3
"""Best-shot parity of the pipeline on every video of a folder, next to its noise floor.

For each video (sampled at --fps), `stream-gate bench`'s `naive`, `naive-mirrored` (naive
on the frames flipped left-right) and `pipeline`. Prints per video the parity of the
pipeline with naive and of the mirrored naive with naive (both ways), then the totals
over all tracks: how often the pipeline falls under 0.95 of naive's best shot, and how
often the baseline does against its own mirror image. About 3 minutes for
../shared/data/media on a 2-core machine.
Usage: .venv/bin/python scripts/parity_survey.py ../shared/data/media [--fps 5]
       [--config FILE.toml]   (e.g. ``[score] model = "path/to/manifest.json"``)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stream_gate.bench import run_bench
from stream_gate.config import load_settings
from stream_gate.log import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--config", type=Path, help="TOML file over the defaults")
    args = p.parse_args()
    setup_logging("warning")
    ratios: dict[str, list[float]] = {"pipeline": [], "mirrored": [], "reverse": []}
    for video in sorted(f for f in args.folder.iterdir() if f.suffix in (".mp4", ".mkv")):
        stream = {"id": "v", "url": str(video), "fps": args.fps}
        s = load_settings(args.config, {"streams": [stream]})
        result = run_bench(s, ["naive", "naive-mirrored", "pipeline"], None)
        floor = result["best_shot_parity_naive_mirrored"]
        got = {"pipeline": result["best_shot_parity"], "mirrored": floor["mirrored_vs_naive"],
               "reverse": floor["naive_vs_mirrored"]}
        for k, res in got.items():
            ratios[k] += [r["ratio"] for r in res["per_track"]]
        print(f"{video.name}: {got['pipeline']['tracks']} tracks; pipeline min "
              f"{got['pipeline']['min']} mean {got['pipeline']['mean']} | naive-mirrored "
              f"min {got['mirrored']['min']} (reverse {got['reverse']['min']})", flush=True)
    for k, v in ratios.items():
        a = np.array(v)
        if len(a):
            print(f"{k}: {len(a)} tracks, min {a.min():.3f}, mean {a.mean():.3f}, "
                  f"{int((a < 0.95).sum())} under 0.95")


if __name__ == "__main__":
    main()

"""``stream-gate engines build|list|verify``: the TensorRT engine cache, ahead of a run."""

from __future__ import annotations

import argparse

from stream_gate.config import load_settings
from stream_gate.service import engines as engines_tool


def cmd_engines(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.action == "list":
        print(engines_tool.format_list(engines_tool.list_engines(settings.runtime),
                                       settings.runtime.engine_cache.expanduser()))
        return 0
    if args.action == "build":
        for path in engines_tool.build(settings, args.calibrate):
            print(f"ready: {path}")
        return 0
    verdict = engines_tool.verify(settings, args.media)
    print(f"{verdict.faces} faces: min IoU {verdict.min_iou:.3f} (>= 0.95), landmarks "
          f"{verdict.max_landmark_px:.2f} px (<= 1), quality {verdict.max_quality_diff:.2f} "
          f"points (<= 1): {'ok' if verdict.ok else 'FAILED'}")
    return 0 if verdict.ok else 1

"""``stream-gate score``: detect, align and score every face of still images."""

from __future__ import annotations

import argparse
import json

from stream_gate.config import load_settings
from stream_gate.pipeline.stills import StillScorer, expand_paths


def cmd_score(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    scorer = StillScorer(settings)
    status = 0
    for path in expand_paths(args.images):
        result = scorer.score_file(path)
        if result.error is not None:
            status = 1
        if args.json:
            print(json.dumps(result.as_json()), flush=True)
        elif result.error is not None:
            print(f"{path}: error: {result.error}")
        else:
            faces = ", ".join(f"q={f['quality']:.1f} det={f['det_score']:.2f}"
                              for f in result.faces) or "no face"
            print(f"{path}: {faces}")
    return status

"""``stream-gate review DIR``: the tuning page of a ``--dump-scored`` directory."""

from __future__ import annotations

import argparse

from stream_gate.config import load_settings
from stream_gate.service.review import write_review


def cmd_review(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    html = args.html or args.dump / "review.html"
    path = write_review(args.dump, args.out, settings, html)
    print(f"review page: {path}")
    return 0

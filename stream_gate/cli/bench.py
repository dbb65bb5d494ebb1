"""``stream-gate bench``: pipeline variants side by side on the same input."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from stream_gate.bench import VARIANTS, find_capacity, format_table, run_bench, to_json
from stream_gate.config import load_settings
from stream_gate.demo import render_sample_clip
from stream_gate.errors import ConfigError


def cmd_bench(args: argparse.Namespace) -> int:
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"--variants: unknown {sorted(unknown)}; choose from {VARIANTS}")
    with tempfile.TemporaryDirectory(prefix="stream-gate-bench-") as tmp:
        sources = args.source or [str(render_sample_clip(Path(tmp) / "sample.mp4"))]
        live = args.duration is not None or args.capacity

        def urls(n: int) -> list[dict[str, Any]]:
            out = []
            for i in range(n):
                url = sources[i % len(sources)]
                if live and "://" not in url:
                    url = "loop://" + url
                out.append({"id": f"cam{i + 1}", "url": url, "fps": args.fps})
            return out

        if args.capacity:
            result = find_capacity(
                lambda n: load_settings(args.config, {"streams": urls(n)}),
                args.duration or 20.0, args.fps, args.max_latency_ms)
        else:
            settings = load_settings(args.config, {"streams": urls(args.streams)})
            result = run_bench(settings, args.variants.split(","), args.duration, args.yunet)
        print(to_json(result) if args.json else format_table(result))
    return 0

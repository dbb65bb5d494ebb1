"""``stream-gate bench``: variants of the pipeline on the same input, side by side.

Variants (variants.py) run one after the other in this process, on the same sampled
frames. ``fps`` is source frames covered per second of wall time (decoded, or skipped
undecoded as non-reference frames): how much video per second a variant gets through.
Stage times are milliseconds per analysed frame (decode runs in its own threads, so
stages overlap and do not add up to the wall time). Latency is frame decode ->
processing done (published), per analysed frame. Peak RSS is sampled during each
variant. Ratios hold on a noisy machine; absolute times do not. parity.py compares the
crops emitted; capacity.py finds the most cameras sustained; report.py prints.

May import: pipeline, stages, runtime and below (bench sits beside service and cli).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stream_gate.bench.capacity import find_capacity
from stream_gate.bench.parity import best_shot_parity
from stream_gate.bench.report import VariantResult, format_table, to_json
from stream_gate.bench.variants import (
    Mirror,
    as_v1,
    decode_only,
    naive_settings,
    run_pipeline_variant,
    warm_up,
    with_yunet,
)
from stream_gate.config import Settings
from stream_gate.pipeline.observe import RunReport

__all__ = ["VARIANTS", "find_capacity", "format_table", "run_bench", "to_json"]

VARIANTS = ("naive", "decode-only", "detector-only", "pipeline", "naive-mirrored",
            "pipeline-v1")


def run_bench(settings: Settings, variants: list[str], duration: float | None,
              yunet: Path | None = None) -> dict[str, Any]:
    """Run ``variants`` one after the other; with ``yunet``, also the detector-only and
    pipeline variants with YuNet as the detector (``…-yunet``)."""
    results: dict[str, VariantResult] = {}
    reports: dict[str, RunReport] = {}
    runs = [(name, settings) for name in variants]
    if yunet is not None:
        runs += [(f"{name}-yunet", with_yunet(settings, yunet)) for name in variants
                 if name in ("detector-only", "pipeline")]
    warm_up(settings)
    for name, cfg in runs:
        print(f"bench: running {name} ...", flush=True, file=sys.stderr)
        if name == "decode-only":
            results[name] = decode_only(cfg, duration)
            continue
        mirror = Mirror() if name == "naive-mirrored" else None
        if name.startswith("naive"):
            cfg = naive_settings(cfg)
        elif name == "pipeline-v1":
            cfg = as_v1(cfg)
        results[name], reports[name] = run_pipeline_variant(
            cfg, duration, detect_only=name.startswith("detector-only"), transform=mirror)
        if mirror is not None:
            mirror.unflip(reports[name])
    base = results.get("naive") or next(iter(results.values()))
    for r in results.values():
        r.ratio = round(r.fps / base.fps, 2) if base.fps else float("nan")
    out: dict[str, Any] = {"variants": {k: asdict(v) for k, v in results.items()}}
    if "naive" in reports and "pipeline" in reports:
        out["best_shot_parity"] = best_shot_parity(reports["naive"], reports["pipeline"])
    if "naive" in reports and "naive-mirrored" in reports:
        # Both ways: either run is an equally valid baseline for the other.
        out["best_shot_parity_naive_mirrored"] = {
            "mirrored_vs_naive": best_shot_parity(reports["naive"], reports["naive-mirrored"]),
            "naive_vs_mirrored": best_shot_parity(reports["naive-mirrored"], reports["naive"])}
    if "naive" in reports and "pipeline-yunet" in reports:
        out["best_shot_parity_yunet"] = best_shot_parity(reports["naive"],
                                                         reports["pipeline-yunet"])
    return out

"""The bench's figures: one :class:`VariantResult` per variant, as a table or JSON."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_gate.pipeline.observe import STAGES


@dataclass
class VariantResult:
    fps: float
    faces_per_s: float
    stage_ms: dict[str, float]
    latency_ms: dict[str, float]
    peak_rss_mb: float
    frames_decoded: int
    frames_analysed: int
    wall_s: float
    wide_frames: int = 0  # analysed frames detected frame-wide (the rest: refined only)
    ratio: float = 1.0


class RssSampler(threading.Thread):
    """Peak resident memory of this process while a variant runs (from /proc)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self._halt = threading.Event()

    @staticmethod
    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kb = max(self.peak_kb, self.rss_kb())
            self._halt.wait(0.02)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return max(self.peak_kb, self.rss_kb()) / 1024


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1)}


def format_table(result: dict[str, Any]) -> str:
    if "capacity" in result:
        c = result["capacity"]
        lines = [f"{t['streams']:>3} streams: min {t['min_stream_fps']:.2f} fps/stream, "
                 f"p95 {t['latency_ms']['p95']:.0f} ms, RSS {t['peak_rss_mb']:.0f} MB, "
                 f"{'sustained' if t['sustained'] else 'NOT sustained'}" for t in c["trials"]]
        lines.append(f"capacity: {c['max_streams']} streams at {c['fps_per_stream']} "
                     f"analysed fps each with p95 <= {c['max_latency_ms']:.0f} ms")
        return "\n".join(lines)
    cols = ["variant", "fps", "x naive", "faces/s", "wide", *STAGES, "lat p50", "lat p95",
            "RSS MB"]
    rows = [cols]
    for name, v in result["variants"].items():
        stage = [f"{v['stage_ms'][s]:.1f}" if s in v["stage_ms"] else "-" for s in STAGES]
        wide = f"{v['wide_frames']}/{v['frames_analysed']}" if v["frames_analysed"] else "-"
        rows.append([name, f"{v['fps']:.1f}", f"{v['ratio']:.2f}", f"{v['faces_per_s']:.1f}", wide,
                     *stage, f"{v['latency_ms']['p50']:.0f}", f"{v['latency_ms']['p95']:.0f}",
                     f"{v['peak_rss_mb']:.0f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    text += ("\n(wide: analysed frames detected frame-wide; stage columns: ms per analysed "
             "frame; latency: ms decode -> published)")
    if "best_shot_parity_naive_mirrored" in result:
        m = result["best_shot_parity_naive_mirrored"]
        a, b = m["mirrored_vs_naive"], m["naive_vs_mirrored"]
        text += (f"\nnoise floor: naive on mirrored frames / naive best: min {a['min']}, mean "
                 f"{a['mean']}; naive / naive-mirrored best: min {b['min']}, mean {b['mean']}")
    for key, variant in (("best_shot_parity", "pipeline"),
                         ("best_shot_parity_yunet", "pipeline-yunet")):
        if key in result:
            p = result[key]
            text += (f"\nbest-shot parity ({variant} best scored / naive best, {p['tracks']} naive "
                     f"tracks; {p['below_floor']} more with best quality < {p['floor']:g} "
                     f"not counted): min {p['min']}, mean {p['mean']}")
            for r in p["per_track"]:
                if r["ratio"] < 0.95:
                    text += (f"\n  below 0.95: {r['stream']} naive track {r['naive_track']} "
                             f"(face ~{r['face_px']} px): naive best {r['naive_best']}, "
                             f"{variant} emitted {r['pipeline']} -> {r['ratio']}")
    return text


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, allow_nan=True)

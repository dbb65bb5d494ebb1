"""``stream-gate bench``: variants of the pipeline on the same input, side by side.

Variants run one after the other in this process, on the same sampled frames:
- ``naive``: what a newcomer writes: every sampled frame decoded and detected at full
  resolution, batch 1, every face aligned and scored (no gates, no refinement, no
  frame skipping);
- ``decode-only``: demux + decode every frame, no colour conversion (the floor);
- ``detector-only``: decode + frame-wide detection of every sampled frame with the
  production settings (the bound);
- ``pipeline``: the production path;
- ``naive-mirrored`` (on request): ``naive`` on the same frames flipped left-right. The
  same pixels, so its best-shot parity with ``naive`` is the noise floor of that
  measure: how far two equally valid runs of the baseline disagree.

``fps`` is source frames covered per second of wall time (decoded, or skipped undecoded
as non-reference frames): how much video per second a variant gets through. Stage times
are milliseconds per analysed frame (decode runs in its own threads, so stages overlap
and do not add up to the wall time). Latency is frame decode -> processing done
(published), per analysed frame. Peak RSS is sampled during each variant. Ratios hold on
a noisy machine; absolute times do not.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from stream_gate.config import Settings
from stream_gate.decode import Source, open_source
from stream_gate.pipeline import STAGES, Pipeline, RunReport
from stream_gate.track import iou_matrix
from stream_gate.types import Frame

VARIANTS = ("naive", "decode-only", "detector-only", "pipeline", "naive-mirrored")
PARITY_FLOOR = 20.0  # naive tracks whose best crop scores below this have no usable face
WARM_UP_S = 2.0


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


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1)}


def decode_only(settings: Settings, duration: float | None) -> VariantResult:
    """Demux + decode every frame of every stream, one thread each, no conversion."""
    counts: dict[str, int] = {}
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()

    def work(sid: str, url: str) -> None:
        src = Source.parse(sid, url, 1.0)
        n = 0
        while True:
            with open_source(src, settings.decode) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                for _ in c.decode(stream):
                    n += 1
                    if duration is not None and time.perf_counter() - t0 >= duration:
                        counts[sid] = n
                        return
            if src.kind != "loop":
                counts[sid] = n
                return

    threads = [threading.Thread(target=work, args=(s.id, s.url)) for s in settings.streams]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    total = sum(counts.values())
    return VariantResult(
        fps=round(total / wall, 1), faces_per_s=0.0,
        stage_ms={"decode": round(wall * 1000 / max(total, 1), 2)},
        latency_ms=_percentiles([]), peak_rss_mb=round(sampler.stop(), 1),
        frames_decoded=total, frames_analysed=0, wall_s=round(wall, 2))


def run_pipeline_variant(settings: Settings, duration: float | None, detect_only: bool,
                         transform: Callable[[Frame], Frame] | None = None
                         ) -> tuple[VariantResult, RunReport]:
    pipeline = Pipeline(settings, [], None, collect=True, detect_only=detect_only,
                        transform=transform)
    pipeline.check_sources()
    sampler = RssSampler()
    sampler.start()
    report = pipeline.run(duration)
    peak = sampler.stop()
    decoded = sum(int(s["decoded"] or 0) for s in report.streams.values())
    covered = sum(int(s["covered"] or 0) for s in report.streams.values())
    n = max(report.frames, 1)
    stages = ("decode", "detect") if detect_only else STAGES
    return VariantResult(
        fps=round(covered / report.wall_s, 1),
        faces_per_s=round(report.faces / report.wall_s, 1),
        stage_ms={k: round(report.stage_s[k] * 1000 / n, 2) for k in stages},
        latency_ms=_percentiles(report.latency_ms), peak_rss_mb=round(peak, 1),
        frames_decoded=decoded, frames_analysed=report.frames, wall_s=round(report.wall_s, 2),
        wide_frames=report.frames if detect_only else report.wide_frames,
    ), report


def naive_settings(settings: Settings) -> Settings:
    """Every sampled frame detected at full resolution, batch 1; every face scored."""
    s = settings.model_copy(deep=True)
    s.detect.max_side = 4096
    s.detect.precision = "fp32"
    s.detect.batch_size = 1
    s.detect.max_wait_ms = 0
    s.detect.every = 1
    s.detect.refine_px = 0
    s.decode.skip_nonref = False
    s.score.min_det_score = 0.0
    s.score.min_eye_px = 0.0
    s.score.max_yaw_deg = 90.0
    s.score.max_per_track_hz = 0.0
    for st in s.streams:
        st.score = st.select = None
    return s


class Mirror:
    """Flips frames left-right and maps a report's track boxes back to the originals."""

    def __init__(self) -> None:
        self.widths: dict[str, int] = {}

    def __call__(self, frame: Frame) -> Frame:
        self.widths[frame.stream_id] = frame.width
        return replace(frame, image=np.ascontiguousarray(frame.image[:, ::-1]))

    def unflip(self, report: RunReport) -> None:
        for t in report.tracks.values():
            w = self.widths[t.stream_id]
            t.boxes = {i: (w - x2, y1, w - x1, y2) for i, (x1, y1, x2, y2) in t.boxes.items()}


def best_shot_parity(naive: RunReport, pipe: RunReport, floor: float = PARITY_FLOOR
                     ) -> dict[str, Any]:
    """For each emitting naive track: pipeline's emitted quality / naive's best quality.

    Tracks of the two runs are matched by their boxes on the frames both analysed
    (IoU ≥ 0.5), taking the pipeline track that overlaps on the most frames. Naive
    tracks whose best crop scores below ``floor`` (no usable face: quality ≈ the chance
    in % that a recogniser verifies it) are counted apart, not in the ratios.
    ``per_track`` lists every counted track, worst first, with its median face height.
    """
    rows: list[dict[str, Any]] = []
    unusable = 0
    for key, nt in naive.tracks.items():
        if not nt.emitted or nt.best_quality <= 0:
            continue
        if nt.best_quality < floor:
            unusable += 1
            continue
        best_match, best_hits = None, 0
        for pkey, pt in pipe.tracks.items():
            if pkey[0] != key[0]:
                continue
            common = sorted(set(nt.boxes) & set(pt.boxes))
            if not common:
                continue
            a = np.array([nt.boxes[i] for i in common])
            b = np.array([pt.boxes[i] for i in common])
            hits = int((np.diag(iou_matrix(a, b)) >= 0.5).sum())
            if hits > best_hits:
                best_match, best_hits = pt, hits
        got = max((e.candidate.quality for e in best_match.emitted), default=0.0) \
            if best_match is not None else 0.0
        height = float(np.median([b[3] - b[1] for b in nt.boxes.values()]))
        rows.append({"stream": key[0], "naive_track": key[1],
                     "naive_best": round(nt.best_quality, 1), "pipeline": round(got, 1),
                     "ratio": round(min(got / nt.best_quality, 1.0) if got else 0.0, 3),
                     "face_px": round(height)})
    rows.sort(key=lambda r: r["ratio"])
    ratios = [r["ratio"] for r in rows]
    if not ratios:
        return {"min": float("nan"), "mean": float("nan"), "tracks": 0,
                "below_floor": unusable, "floor": floor, "per_track": []}
    return {"min": round(min(ratios), 3), "mean": round(float(np.mean(ratios)), 3),
            "tracks": len(ratios), "below_floor": unusable, "floor": floor,
            "per_track": rows}


def with_yunet(settings: Settings, path: Path) -> Settings:
    """The same settings with YuNet (from ``path``) as the detector."""
    s = settings.model_copy(deep=True)
    s.detect = s.detect.model_validate({**s.detect.model_dump(), "model": "yunet",
                                        "model_path": path})
    return s


def warm_up(settings: Settings, seconds: float = WARM_UP_S) -> None:
    """Untimed runs of ``naive`` and of the production settings first, so that the first
    timed variant does not pay the process's one-time costs alone (libraries, thread
    pools, the first touch of naive's ~1 GB of buffers: whichever variant ran first was
    5-20 % slower; on a GPU, cuDNN's ~1 s per new input shape)."""
    print("bench: warming up ...", flush=True, file=sys.stderr)
    for cfg in (naive_settings(settings), settings):
        Pipeline(cfg, [], None).run(seconds)


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


def search_capacity(sustained: Callable[[int], bool], limit: int) -> int:
    """The largest N in 1..limit with ``sustained(N)``, assuming more cameras never help:
    N doubles until a trial fails, then the gap is bisected (about 2·log2(N) trials, so
    a GPU's 64+ cameras are found in minutes, not an hour of 1, 2, 3, ...)."""
    good, bad, n = 0, limit + 1, 1
    while n <= limit:
        if not sustained(n):
            bad = n
            break
        good, n = n, n * 2
    else:  # every doubling within the limit held: try the limit itself
        if good == limit or sustained(limit):
            return limit
        bad = limit
    while bad - good > 1:
        mid = (good + bad) // 2
        if sustained(mid):
            good = mid
        else:
            bad = mid
    return good


def find_capacity(settings_for: Callable[[int], Settings], duration: float, fps: float,
                  max_latency_ms: float, limit: int = 256) -> dict[str, Any]:
    """Largest N of paced cameras analysed at ``fps`` each with p95 latency in bound.

    A trial of N cameras fails when some stream analysed fewer than 90 % of its
    ``fps × duration`` frames, or p95 latency exceeded ``max_latency_ms``.
    """
    trials: list[dict[str, Any]] = []

    def sustained(n: int) -> bool:
        res, report = run_pipeline_variant(settings_for(n), duration, detect_only=False)
        analysed = [int(s["sampled"] or 0) - int(s["dropped"] or 0)
                    for s in report.streams.values()]
        rate = min(analysed) / report.wall_s
        ok = rate >= 0.9 * fps and res.latency_ms["p95"] <= max_latency_ms
        trials.append({"streams": n, "min_stream_fps": round(rate, 2),
                       "latency_ms": res.latency_ms, "fps_total": res.fps,
                       "peak_rss_mb": res.peak_rss_mb, "sustained": ok})
        print(f"bench: {n} streams: {rate:.2f} analysed fps per stream (min), "
              f"p95 {res.latency_ms['p95']} ms -> {'ok' if ok else 'over'}",
              file=sys.stderr, flush=True)
        return ok

    warm_up(settings_for(1))
    best = search_capacity(sustained, limit)
    trials.sort(key=lambda t: t["streams"])
    return {"capacity": {"max_streams": best, "fps_per_stream": fps,
                         "max_latency_ms": max_latency_ms, "trials": trials}}


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
            text += (f"\nbest-shot parity ({variant} emitted / naive best, {p['tracks']} naive "
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

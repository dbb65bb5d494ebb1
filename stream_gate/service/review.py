"""``stream-gate review``: a tuning report from a ``--dump-scored`` directory, as one HTML page.

An operator choosing ``select.min_quality``, ``improve_delta`` or the gates needs to see
what the gate saw. Per camera and per track: its scored crops in time order with their
quality and gate measures (the emitted ones marked, from an ``--out`` directory), the
quality over time, the histogram of every scored quality against ``min_quality``, what
``improving`` would have emitted at other thresholds (the tracks replayed through the
product's selector, consensus included: the dump carries the model's signatures), and a
summary (tracks, scored,
emitted, gated by which gate). The page is self-contained (crops and plots inline), so
it can be mailed or archived without the dump.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import jinja2
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from stream_gate.config import ScoreConfig, SelectConfig, Settings
from stream_gate.errors import StartupError
from stream_gate.geometry import eye_distance, yaw_estimate
from stream_gate.stages.select import build_selector
from stream_gate.types import Candidate, TrackEnd

MAX_STRIP = 40  # crops shown per track (evenly spread; the best and the emitted always)
THRESHOLDS = (0, 20, 40, 60, 80)  # min_quality values the "improving" table compares


@dataclass
class Crop:
    """One scored crop of the dump."""

    frame_index: int
    ts_ms: int
    quality: float
    det_score: float
    eye_px: float
    yaw_deg: float
    jpeg: Path
    emitted: str = ""  # "track_end #1", ... when it was emitted
    box: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(4, np.float32))
    landmarks: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((5, 2), np.float32))
    signature: npt.NDArray[np.float32] | None = None  # the quality model's, if it gives one
    t: float | None = None  # media time, s (older dumps: none; the wall clock stands in)

    @property
    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg.read_bytes()).decode()


@dataclass
class Track:
    stream_id: str
    track_id: int
    crops: list[Crop] = field(default_factory=list)
    gated: Counter[str] = field(default_factory=Counter)

    @property
    def best(self) -> float:
        return max((c.quality for c in self.crops), default=0.0)

    @property
    def emitted(self) -> list[Crop]:
        return [c for c in self.crops if c.emitted]

    def strip(self) -> list[Crop]:
        """Up to MAX_STRIP crops in time order: evenly spread, the best and every
        emitted one kept."""
        if len(self.crops) <= MAX_STRIP:
            return self.crops
        best = max(range(len(self.crops)), key=lambda i: self.crops[i].quality)
        keep = {int(i) for i in np.linspace(0, len(self.crops) - 1, MAX_STRIP)} | {best}
        keep |= {i for i, c in enumerate(self.crops) if c.emitted}
        return [self.crops[i] for i in sorted(keep)]


@dataclass
class Camera:
    stream_id: str
    tracks: list[Track]
    select: SelectConfig  # this camera's: the global [select] with its overrides
    score: ScoreConfig | None = None  # its [score] gates where it overrides them
    quality_svg: str = ""
    histogram_svg: str = ""
    improving: list[tuple[float, int, int]] = field(default_factory=list)  # thr, entries, tracks


def _read_json(path: Path) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path}: not a stream-gate crop record: {exc}") from None
    return data


def load(dump: Path, emitted: Path | None = None) -> dict[str, dict[int, Track]]:
    """The dump's tracks by camera, crops in time order, emitted ones marked."""
    if not dump.is_dir():
        raise StartupError(f"review: {dump} is not a directory (give a --dump-scored folder)")
    marks: dict[tuple[str, int, int], str] = {}
    for path in sorted(emitted.glob("*.json")) if emitted is not None else []:
        meta = _read_json(path)
        if "emit_id" in meta:
            marks[(meta["stream_id"], int(meta["track_id"]), int(meta["frame_index"]))] = \
                f"{meta['reason']} #{meta['rank']}"
    cams: dict[str, dict[int, Track]] = {}
    for path in sorted(dump.glob("*.json")):
        meta = _read_json(path)
        sid, tid, fi = meta["stream_id"], int(meta["track_id"]), int(meta["frame_index"])
        lms = np.array(json.loads(meta["landmarks"]), np.float32)
        track = cams.setdefault(sid, {}).setdefault(tid, Track(sid, tid))
        sig = meta.get("signature")
        track.crops.append(Crop(fi, int(meta["ts_ms"]), float(meta["quality"]),
                                float(meta["det_score"]), eye_distance(lms),
                                yaw_estimate(lms), path.with_suffix(".jpg"),
                                marks.get((sid, tid, fi), ""),
                                np.array(json.loads(meta["bbox"]), np.float32), lms,
                                None if sig is None else np.array(json.loads(sig), np.float32),
                                float(meta["t"]) if "t" in meta else None))
    gated = dump / "gated.jsonl"
    lines = gated.read_text().splitlines() if gated.is_file() else []
    for line in lines:
        g = json.loads(line)
        cams.setdefault(g["stream_id"], {}).setdefault(
            g["track_id"], Track(g["stream_id"], g["track_id"])).gated[g["reason"]] += 1
    if not cams:
        raise StartupError(f"review: {dump} holds no scored crops (run with --dump-scored)")
    for tracks in cams.values():
        for t in tracks.values():
            t.crops.sort(key=lambda c: c.frame_index)
    return cams


def _candidates(track: Track, pixels: bool) -> list[Candidate]:
    """The track's scored crops as the selector saw them, in time order; the JPEG read
    back only when ``pixels`` (the consensus on crops without a model signature)."""
    out = []
    for c in track.crops:
        img = cv2.imread(str(c.jpeg)) if pixels and c.signature is None else None
        out.append(Candidate(
            stream_id=track.stream_id, track_id=track.track_id, frame_index=c.frame_index,
            pts=None, t=c.ts_ms / 1000 if c.t is None else c.t, wall_ms=c.ts_ms, box=c.box,
            landmarks=c.landmarks,
            det_score=c.det_score, crop=img if img is not None else np.zeros(
                (112, 112, 3), np.uint8), quality=c.quality, quality_raw=c.quality / 100,
            signature=c.signature))
    return out


def improving_entries(track: Track | Sequence[Candidate], select: SelectConfig,
                      min_quality: float, min_hits: int = 1) -> int:
    """How many crops ``select.policy = "improving"`` would emit for one track with these
    select settings at ``min_quality``: its scored crops replayed through the product's
    selector in time order, the track confirmed at its ``min_hits``-th scored crop (a
    gate that skipped a face makes that a little late)."""
    cands = track if not isinstance(track, Track) else _candidates(
        track, pixels=bool(select.consensus_weight))
    if not cands:
        return 0
    cfg = select.model_copy(update={"policy": "improving", "min_quality": min_quality})
    selector = build_selector(cfg, "review")
    n = sum(len(selector.offer(c, confirmed=k >= min_hits))
            for k, c in enumerate(cands, start=1))
    return n + len(selector.end(TrackEnd(cands[0].track_id, len(cands) >= min_hits,
                                         len(cands))))


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML prologue


def _quality_plot(tracks: Iterable[Track]) -> str:
    fig = Figure(figsize=(7, 2.6))
    ax = fig.add_subplot()
    for t in tracks:
        ax.plot([c.frame_index for c in t.crops], [c.quality for c in t.crops],
                marker=".", label=f"track {t.track_id}")
    ax.set_xlabel("source frame")
    ax.set_ylabel("quality")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, ncols=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    return _svg(fig)


def _histogram(qualities: list[float], min_quality: float) -> str:
    fig = Figure(figsize=(7, 2.2))
    ax = fig.add_subplot()
    ax.hist(qualities, bins=20, range=(0, 100), color="#4477aa")
    ax.axvline(min_quality, color="#cc3311", label=f"select.min_quality = {min_quality:g}")
    ax.set_xlabel("quality of every scored crop")
    ax.set_ylabel("crops")
    ax.legend(fontsize=7)
    return _svg(fig)


def build(cams: dict[str, dict[int, Track]], select: SelectConfig, min_hits: int = 1,
          per_camera: Mapping[str, SelectConfig] | None = None,
          gates: Mapping[str, ScoreConfig] | None = None) -> list[Camera]:
    """Each camera's tracks (most crops first), plots and the improving table, under its
    own select settings (``per_camera``, by stream id; ``select`` for the others);
    ``gates``: the [score] of the cameras that override it, shown with them."""
    out = []
    for sid, by_id in sorted(cams.items()):
        tracks = sorted((t for t in by_id.values()), key=lambda t: (-len(t.crops), t.track_id))
        scored = [t for t in tracks if t.crops]
        own = (per_camera or {}).get(sid, select)
        cam = Camera(sid, tracks, own, (gates or {}).get(sid), _quality_plot(scored),
                     _histogram([c.quality for t in scored for c in t.crops],
                                own.min_quality))
        cands = [_candidates(t, pixels=bool(own.consensus_weight)) for t in scored]
        for thr in sorted({*THRESHOLDS, own.min_quality}):
            counts = [improving_entries(c, own, thr, min_hits) for c in cands]
            cam.improving.append((thr, sum(counts), sum(n > 0 for n in counts)))
        out.append(cam)
    return out


def render(cameras: list[Camera], select: SelectConfig, score: ScoreConfig, source: str
           ) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("stream_gate.service"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    template = env.get_template("review.html.j2")
    gated = Counter[str]()
    for cam in cameras:
        for t in cam.tracks:
            gated.update(t.gated)
    return template.render(cameras=cameras, select=select, score=score, source=source,
                           gated=gated, tracks=sum(len(c.tracks) for c in cameras),
                           scored=sum(len(t.crops) for c in cameras for t in c.tracks),
                           emitted=sum(len(t.emitted) for c in cameras for t in c.tracks))


def write_review(dump: Path, emitted: Path | None, settings: Settings, html: Path) -> Path:
    """The review page of ``dump`` (``emitted``: an ``--out`` folder) written to ``html``,
    each camera under its own select settings where ``settings`` has the stream."""
    per_camera = {s.id: settings.select_for(s.id) for s in settings.streams}
    gates = {s.id: settings.score_for(s.id) for s in settings.streams if s.score is not None}
    page = render(build(load(dump, emitted), settings.select, settings.track.min_hits,
                        per_camera, gates), settings.select, settings.score, str(dump))
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page)
    except OSError as exc:
        raise StartupError(f"review: cannot write {html}: {exc.strerror}") from None
    return html

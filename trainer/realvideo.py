"""Real video as data: the pipeline's scored crops of identity-pure clips, by person.

The real-video benchmark (``evaluate-video``) and the real training set (``real-data``)
both start here:

1. a **clip list** (TOML, ``trainer/clips.toml`` for ``../shared/data/media``) names each
   clip's file, the one person in it (``identity``) and the half it belongs to
   (``split``: ``dev`` or ``test``; unset: by a hash of the identity). A clip with
   ``gallery = true`` holds several people: its tracks are named by the gallery
   (``--gallery DIR`` of ``DIR/<identity>/*.jpg``) or dropped;
2. :func:`dump_clip` runs the real pipeline on the clip with ``--dump-scored`` (every
   scored crop, its landmarks, box and detector score; JPEG quality 100), once per clip
   and settings (a ``done.json`` says which);
3. :func:`load_dump` reads a dump back into :class:`ClipCrops` (crops in memory, media
   time from the frame index and the clip's frame rate);
4. :func:`segments` cuts each track into windows of ``segment_s`` seconds of media time:
   the unit in which a selector picks one crop.
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.geometry import group_by
from trainer.data import IMAGE_SUFFIXES, name_hash

SPLITS = ("dev", "test")


@dataclass(frozen=True, slots=True)
class Clip:
    """One video of the clip list."""

    path: Path
    identity: str  # "" for a gallery clip (several people)
    split: str

    @property
    def id(self) -> str:
        """The stream id of the clip in the pipeline (its file name without suffix)."""
        return self.path.stem


def split_of(identity: str) -> str:
    """Deterministic identity-level half: the same name always lands on the same side."""
    return SPLITS[name_hash(identity) % 2]


def load_clips(path: Path, media: Path) -> list[Clip]:
    """The clips of a clip-list TOML file (``[[clips]] file, identity, split, gallery``).

    ``file`` is relative to ``media``. ``split``: ``dev`` or ``test`` (benchmark halves,
    by identity; unset: a hash of the identity) or ``train`` (training only, never
    benchmarked; without an identity each track is a person of its own). Errors name the
    entry and the key.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{path}: {exc}") from None
    clips: list[Clip] = []
    for i, row in enumerate(data.get("clips", [])):
        where = f"{path}: clips.{i}"
        unknown = set(row) - {"file", "identity", "split", "gallery"}
        if unknown:
            raise SystemExit(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if "file" not in row:
            raise SystemExit(f"{where}: 'file' is missing")
        gallery = bool(row.get("gallery", False))
        identity = str(row.get("identity", ""))
        split = str(row.get("split", split_of(identity) if identity else "test"))
        if split not in (*SPLITS, "train"):
            raise SystemExit(f"{where}.split: {split!r} is not one of {(*SPLITS, 'train')}")
        if split != "train" and gallery == bool(identity):
            raise SystemExit(f"{where}: give either 'identity' (one person) or "
                             "'gallery = true' (several, named by --gallery)")
        clip = Clip(media / row["file"], identity, split)
        if not clip.path.is_file():
            raise SystemExit(f"{where}.file: {clip.path} does not exist")
        clips.append(clip)
    if not clips:
        raise SystemExit(f"{path}: no [[clips]]")
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: two clips share a file name; names are their stream ids")
    sides: dict[str, set[str]] = defaultdict(set)
    for c in clips:
        if c.identity:
            sides[c.identity].add(c.split)
    mixed = sorted(k for k, v in sides.items() if len(v) > 1)
    if mixed:
        raise SystemExit(f"{path}: identity {mixed[0]!r} is in two halves; split by identity")
    return clips


def frame_rate(path: Path) -> float:
    """The clip's average frame rate (frames per second)."""
    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
    if not rate:
        raise SystemExit(f"{path}: no frame rate in the container")
    return float(rate)


def dump_clip(clip: Clip, out: Path, fps: float, model: str = "cr-fiqa-s") -> Path:
    """Run the pipeline on ``clip`` with ``--dump-scored`` into ``out/<clip id>``.

    Skipped when that folder already holds a finished dump of the same clip and settings.
    """
    from stream_gate.config import load_settings
    from stream_gate.pipeline.graph import build_pipeline
    from stream_gate.pipeline.observe import ScoredDump
    from stream_gate.stages.publish import DirectorySink

    folder = out / clip.id
    stamp = {"clip": str(clip.path.resolve()), "bytes": clip.path.stat().st_size,
             "fps": fps, "model": model}
    done = folder / "done.json"
    if done.exists() and json.loads(done.read_text()) == stamp:
        return folder
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings(None, {
        "streams": [{"id": clip.id, "url": str(clip.path), "fps": fps}],
        "score": {"model": model}, "redis": {"jpeg_quality": 100}})
    dump = ScoredDump(DirectorySink(folder, 100, what="dump"))
    build_pipeline(settings, observers=[dump]).run()
    done.write_text(json.dumps(stamp) + "\n")
    return folder


@dataclass
class ClipCrops:
    """Every scored crop of a set of clips, one row each (arrays aligned)."""

    crops: npt.NDArray[np.uint8]          # N×112×112×3 BGR
    clip: list[str]                       # clip id
    track: npt.NDArray[np.int64]          # track id (within its clip)
    t: npt.NDArray[np.float64]            # media time, seconds
    frame_index: npt.NDArray[np.int64]
    det_score: npt.NDArray[np.float32]
    box: npt.NDArray[np.float32]          # N×4 frame pixels
    landmarks: npt.NDArray[np.float32]    # N×5×2 frame pixels
    identity: list[str] = field(default_factory=list)  # "" until named
    split: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clip)

    def track_rows(self, rows: Iterable[int] | None = None) -> dict[tuple[str, int], list[int]]:
        """The rows (all, or ``rows``) of each track, keyed (clip, track id), in order."""
        return group_by(range(len(self)) if rows is None else rows,
                        lambda r: (self.clip[r], int(self.track[r])))

    def subset(self, keep: npt.NDArray[np.intp]) -> ClipCrops:
        return ClipCrops(self.crops[keep], [self.clip[i] for i in keep], self.track[keep],
                         self.t[keep], self.frame_index[keep], self.det_score[keep],
                         self.box[keep], self.landmarks[keep],
                         [self.identity[i] for i in keep], [self.split[i] for i in keep])

    @staticmethod
    def concat(parts: Sequence[ClipCrops]) -> ClipCrops:
        if not parts:
            return ClipCrops(np.zeros((0, 112, 112, 3), np.uint8), [], np.zeros(0, np.int64),
                             np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.float32),
                             np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32))
        return ClipCrops(
            np.concatenate([p.crops for p in parts]), [c for p in parts for c in p.clip],
            np.concatenate([p.track for p in parts]), np.concatenate([p.t for p in parts]),
            np.concatenate([p.frame_index for p in parts]),
            np.concatenate([p.det_score for p in parts]),
            np.concatenate([p.box for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
            [c for p in parts for c in p.identity], [c for p in parts for c in p.split])


def load_dump(folder: Path, clip: Clip, min_track_crops: int = 3) -> ClipCrops:
    """The scored crops of one clip's dump; tracks with fewer than ``min_track_crops``
    scored crops (a false detection, a face glimpsed) are left out."""
    period = 1.0 / frame_rate(clip.path)
    rows = []
    for meta_path in sorted(folder.glob("*.json")):
        if meta_path.name == "done.json":
            continue
        meta = json.loads(meta_path.read_text())
        img = cv2.imread(str(meta_path.with_suffix(".jpg")), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{meta_path.with_suffix('.jpg')}: missing or unreadable")
        rows.append((meta, img))
    per_track: dict[int, int] = defaultdict(int)
    for meta, _ in rows:
        per_track[int(meta["track_id"])] += 1
    rows = [(m, im) for m, im in rows if per_track[int(m["track_id"])] >= min_track_crops]
    rows.sort(key=lambda r: (int(r[0]["track_id"]), int(r[0]["frame_index"])))
    if not rows:
        return ClipCrops.concat([])
    n = len(rows)
    frame_index = np.array([int(m["frame_index"]) for m, _ in rows], np.int64)
    return ClipCrops(
        crops=np.stack([im for _, im in rows]),
        clip=[clip.id] * n,
        track=np.array([int(m["track_id"]) for m, _ in rows], np.int64),
        t=frame_index.astype(np.float64) * period,
        frame_index=frame_index,
        det_score=np.array([float(m["det_score"]) for m, _ in rows], np.float32),
        box=np.array([json.loads(m["bbox"]) for m, _ in rows], np.float32).reshape(n, 4),
        landmarks=np.array([json.loads(m["landmarks"]) for m, _ in rows],
                           np.float32).reshape(n, 5, 2),
        identity=[clip.identity] * n,
        split=[clip.split] * n,
    )


def clip_crops(clips: Sequence[Clip], work: Path, fps: float) -> ClipCrops:
    """Every clip's scored crops, each clip through the pipeline once (its dump cached in
    ``work/dump``), with progress shown."""
    parts = []
    for n, clip in enumerate(clips, 1):
        print(f"[{n}/{len(clips)}] pipeline on {clip.path.name}", flush=True)
        parts.append(load_dump(dump_clip(clip, work / "dump", fps), clip))
    return ClipCrops.concat(parts)


def read_gallery(folder: Path) -> dict[str, list[Path]]:
    """``folder/<identity>/*.jpg|png``: the photos of each person."""
    if not folder.is_dir():
        raise SystemExit(f"--gallery {folder}: not a folder")
    out = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
           for d in sorted(folder.iterdir()) if d.is_dir()}
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise SystemExit(f"--gallery {folder}: no <identity>/<photo> inside")
    return out


def name_tracks(items: ClipCrops, emb: npt.NDArray[np.float32],
                gallery: dict[str, npt.NDArray[np.float32]], min_sim: float,
                splits: dict[str, str]) -> npt.NDArray[np.intp]:
    """Name the tracks of gallery clips (``identity`` ""), in place: a track is the
    gallery person its best crop matches (the highest cosine similarity to that
    person's mean embedding ``gallery[name]``) when that similarity reaches ``min_sim``.
    Returns the rows to keep: those of identity clips and of named tracks."""
    names = sorted(gallery)
    keep = np.array([bool(i) for i in items.identity])
    tracks = items.track_rows(int(r) for r in np.flatnonzero(~keep))
    if not names:
        return np.flatnonzero(keep)
    centres = np.stack([gallery[n] for n in names])
    for rows in tracks.values():
        sims = emb[rows] @ centres.T  # crops × people
        best = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[best] < min_sim:
            continue
        who = names[int(best[1])]
        for r in map(int, rows):
            items.identity[r] = who
            items.split[r] = splits.get(who, split_of(who))
        keep[rows] = True
    return np.flatnonzero(keep)


@dataclass(frozen=True, slots=True)
class Segment:
    """``segment_s`` seconds of one person's track: the crops a selector picks from."""

    identity: str
    split: str
    clip: str
    track: int
    index: int
    rows: npt.NDArray[np.intp]  # rows of the ClipCrops


def segments(items: ClipCrops, segment_s: float = 1.5, min_crops: int = 2) -> list[Segment]:
    """Each track cut into consecutive windows of ``segment_s`` seconds from its first
    crop; windows with fewer than ``min_crops`` crops (where every selector must pick the
    same) are left out."""
    out: list[Segment] = []
    for (clip, track), rows in sorted(items.track_rows().items()):
        idx = np.array(rows)
        t0 = items.t[idx].min()
        window = np.floor((items.t[idx] - t0) / segment_s + 1e-9).astype(int)
        for w in np.unique(window):
            sel = idx[window == w]
            if len(sel) >= min_crops:
                out.append(Segment(items.identity[sel[0]], items.split[sel[0]], clip, track,
                                   int(w), sel))
    return out

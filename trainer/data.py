"""Data preparation: identity folders -> aligned 112×112 crops, a manifest and a split.

Uses stream_gate's own detector and aligner, so training sees exactly the crops the
gate produces at run time. In each photo the face nearest the centre among the
confident ones is taken (identity datasets such as LFW centre the labelled person).
Photos without a usable face are listed in ``undetected.txt``, never silently dropped.

Output folder:
- ``crops.npy``       N×112×112×3 uint8, BGR (as stream_gate serves them)
- ``manifest.jsonl``  one line per crop: index, identity, source path, landmarks,
                      detector score, split
- ``undetected.txt``  source paths with no usable face
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from stream_gate.config import DetectConfig
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.detect import build_host_detector
from stream_gate.stages.detect.base import FaceDetector

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True, slots=True)
class Sample:
    index: int
    identity: str
    source: str
    landmarks: list[list[float]]
    det_score: float
    split: str


def name_hash(name: str) -> int:
    """A 32-bit number fixed by ``name``: the same person always lands on the same side
    of every identity-level split (LFW train/val, its val/test halves, video dev/test)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)


def split_of(identity: str, val_fraction: float) -> str:
    """Deterministic identity-level split: the same name always lands on the same side."""
    return "val" if name_hash(identity) / 0xFFFFFFFF < val_fraction else "train"


def list_images(root: Path, max_per_identity: int | None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for ident_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in ident_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        out += [(ident_dir.name, f) for f in files[:max_per_identity]]
    return out


def pick_face(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
              shape: tuple[int, ...], min_score: float) -> int | None:
    """Index of the confident face closest to the image centre, or None."""
    ok = np.flatnonzero(scores >= min_score)
    if ok.size == 0:
        return None
    cx = (boxes[ok, 0] + boxes[ok, 2]) / 2 - shape[1] / 2
    cy = (boxes[ok, 1] + boxes[ok, 3]) / 2 - shape[0] / 2
    return int(ok[np.argmin(cx**2 + cy**2)])


def photo_detector() -> FaceDetector:
    """The detector for photos: stream_gate's own, full precision, any face size."""
    return build_host_detector(DetectConfig(max_side=640, min_face_px=0), precise=True)


def align_photos(paths: list[Path], min_score: float = 0.5,
                 detector: FaceDetector | None = None) -> npt.NDArray[np.uint8]:
    """The aligned 112×112 crop of the central face of each readable photo that has one
    (a gallery's photos of one person); photos without a face are skipped."""
    detector = detector or photo_detector()
    out = []
    for path in paths:
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            continue
        det = detector.detect_images([im])[0]
        i = pick_face(det.boxes, det.scores, im.shape, min_score)
        if i is not None:
            out.append(align_face(im, det.landmarks[i])[0])
    return np.stack(out) if out else np.zeros((0, 112, 112, 3), np.uint8)


def prepare(root: Path, out: Path, val_fraction: float = 0.2,
            max_per_identity: int | None = 40, min_score: float = 0.5,
            batch: int = 16) -> tuple[int, int]:
    """Detect + align every photo under ``root``; returns (crops written, undetected)."""
    out.mkdir(parents=True, exist_ok=True)
    images = list_images(root, max_per_identity)
    if not images:
        raise SystemExit(f"no images found under {root} (expected <root>/<identity>/*.jpg)")
    detector = photo_detector()
    crops = np.lib.format.open_memmap(out / "crops.tmp.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(images), 112, 112, 3))
    samples: list[Sample] = []
    missing: list[str] = []
    for start in tqdm(range(0, len(images), batch), desc="prepare", unit="batch"):
        chunk = images[start : start + batch]
        pics = [cv2.imread(str(p), cv2.IMREAD_COLOR) for _, p in chunk]
        readable = [(c, im) for c, im in zip(chunk, pics, strict=True) if im is not None]
        missing += [str(p) for (_, p), im in zip(chunk, pics, strict=True) if im is None]
        dets = detector.detect_images([im for _, im in readable]) if readable else []
        for ((ident, path), im), det in zip(readable, dets, strict=True):
            i = pick_face(det.boxes, det.scores, im.shape, min_score)
            if i is None:
                missing.append(str(path))
                continue
            crops[len(samples)] = align_face(im, det.landmarks[i])[0]
            samples.append(Sample(
                index=len(samples), identity=ident, source=str(path),
                landmarks=det.landmarks[i].round(2).tolist(), det_score=float(det.scores[i]),
                split=split_of(ident, val_fraction),
            ))
    crops.flush()
    final = np.lib.format.open_memmap(out / "crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(samples), 112, 112, 3))
    final[:] = crops[: len(samples)]
    final.flush()
    del crops, final
    (out / "crops.tmp.npy").unlink()
    with open(out / "manifest.jsonl", "w") as fh:
        for s in samples:
            fh.write(json.dumps(asdict(s)) + "\n")
    (out / "undetected.txt").write_text("".join(m + "\n" for m in missing))
    return len(samples), len(missing)


def load_prepared(folder: Path) -> tuple[npt.NDArray[np.uint8], list[Sample]]:
    crops = np.load(folder / "crops.npy", mmap_mode="r")
    with open(folder / "manifest.jsonl") as fh:
        samples = [Sample(**json.loads(line)) for line in fh]
    if len(samples) != len(crops):
        raise SystemExit(f"{folder}: manifest has {len(samples)} rows, crops.npy {len(crops)}")
    return crops, samples

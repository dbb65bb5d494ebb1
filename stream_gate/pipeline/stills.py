"""Still images: detect, align and score every face of a photo (``stream-gate score``).

The same stages as the video pipeline, on the same backend, with each photo as a batch
of one frame (no tracking, no selection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from stream_gate.config import Settings
from stream_gate.runtime import choose_backend
from stream_gate.stages.align_score import build_align_score
from stream_gate.stages.batch import build_batcher
from stream_gate.stages.detect import build_detector
from stream_gate.types import Frame, ImageBGR

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class ImageResult:
    path: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "faces": self.faces}
        if self.error is not None:
            out["error"] = self.error
        return out


def truncated_jpeg(path: Path) -> bool:
    """A JPEG whose end-of-image marker is missing: OpenCV fills the lost part with grey
    and would score it as a face."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\xff\xd8":
            return False  # not a JPEG
        fh.seek(max(0, path.stat().st_size - 64))
        return b"\xff\xd9" not in fh.read()


def expand_paths(paths: list[Path]) -> list[Path]:
    """Image files named directly, plus the images inside named folders (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


class StillScorer:
    """Detector + aligner + quality scorer for photos, sharing the pipeline's code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        backend = choose_backend(settings.runtime)
        self.batcher = build_batcher(settings.detect, backend)
        self.detector = build_detector(settings.detect, backend)
        self.align_score = build_align_score(settings.score, backend)

    def score_file(self, path: Path) -> ImageResult:
        image: ImageBGR | None = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            reason = "file not found" if not path.exists() else "not a readable image"
            return ImageResult(str(path), error=reason)
        if truncated_jpeg(path):
            return ImageResult(str(path), error="truncated JPEG (its end is missing)")
        batch = self.batcher.pack([Frame(stream_id="still", index=0, pts=None, t=0.0,
                                         wall_ms=0, image=image)])
        dets = self.detector.detect(batch)[0]
        keep = dets.scores >= self.settings.score.min_det_score
        dets = dets.subset(keep)
        scores = self.align_score.run(batch, [(0, lm) for lm in dets.landmarks]).scores
        result = ImageResult(str(path))
        for i in range(len(dets)):
            result.faces.append({
                "bbox": [round(float(v), 1) for v in dets.boxes[i]],
                "landmarks": [
                    [round(float(x), 1), round(float(y), 1)] for x, y in dets.landmarks[i]
                ],
                "det_score": round(float(dets.scores[i]), 4),
                "quality": round(float(scores.quality[i]), 2),
                "quality_raw": round(float(scores.raw[i]), 6),
            })
        return result

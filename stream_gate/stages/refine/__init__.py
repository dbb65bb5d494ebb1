"""Refine: re-detect known faces on full-resolution windows around them (coarse to fine).

The frame-wide detector sees a scaled-down frame, so a small face's landmarks are off by
a pixel or two of the original: enough to tilt the aligned crop and cost quality points.
Refinement runs the precise (full-precision) detector on windows of original pixels
around given boxes, in one batch per input size (windows.py plans them; host.py cuts
them with OpenCV, torch.py on the device). The track stage uses it for the small faces of
frame-wide frames and for the tracked faces of the frames in between.
docs/decisions/001-refine-windows.md gives the measurements behind the window sizes.

May import: stages.detect.base and .torch (the codec, on the host or the device),
runtime, geometry, config, types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from stream_gate.config import DetectConfig
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.stages.refine.host import Refiner
from stream_gate.stages.refine.windows import CONTEXT, Job, Planner
from stream_gate.types import Detections, FrameBatch

if TYPE_CHECKING:
    from stream_gate.stages.detect.torch import DeviceDetector

__all__ = ["CONTEXT", "Job", "Planner", "Refine", "Refiner", "build_refiner"]


class Refine(Protocol):
    """What the track stage asks of refinement."""

    def refine(self, batch: FrameBatch, jobs: Sequence[Job]) -> list[Detections]:
        """For each (frame index in ``batch``, box): the face found there (0 or 1)."""
        ...


def build_refiner(cfg: DetectConfig, precise: FaceDetector | DeviceDetector) -> Refine:
    """Refinement to ``detect.refine_px`` with ``precise``, a full-precision detector
    (host or device: the refiner follows it)."""
    if isinstance(precise, FaceDetector):
        return Refiner(precise, Planner(cfg.refine_px, cfg.refine_small_px))
    from stream_gate.stages.refine.torch import DeviceRefiner

    return DeviceRefiner(precise.codec, precise.model,
                         Planner(cfg.refine_px, cfg.refine_small_px, share=False))

"""Typed records passed between pipeline stages (one direction, no back edges)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

FloatArray = npt.NDArray[np.float32]
ImageBGR = npt.NDArray[np.uint8]

EmitReason = Literal["track_end", "improving", "max_wait"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, sampled video frame.

    ``t`` is the stream's media time in seconds (pts-based, monotonic even across the
    loops of a ``loop://`` source); trackers and selection policies measure time with it
    so a file gives the same result however fast it is processed.
    """

    stream_id: str
    index: int
    pts: int | None
    t: float
    wall_ms: int
    image: ImageBGR

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """The frames of one batch (from any streams, each stream's in order), and the same
    frames on the backend's device when the stages run there (uint8 HWC BGR tensors,
    uploaded once by the batch stage; None on the host backend)."""

    frames: Sequence[Frame]
    device: Sequence[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, indices: Sequence[int]) -> FrameBatch:
        """The frames at ``indices`` (and their device copies), in that order."""
        dev = self.device
        return FrameBatch([self.frames[i] for i in indices],
                          None if dev is None else [dev[i] for i in indices])


@dataclass(frozen=True, slots=True)
class Detections:
    """Faces found in one frame, in frame pixel coordinates.

    ``boxes`` is N×4 (x1, y1, x2, y2), ``scores`` N, ``landmarks`` N×5×2 in the order
    left eye, right eye, nose, left mouth corner, right mouth corner (image left/right).
    """

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )

    def subset(self, keep: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A detection that the tracker matched to a track in the current frame."""

    track_id: int
    confirmed: bool
    hits: int
    box: FloatArray
    score: float
    landmarks: FloatArray


@dataclass(frozen=True, slots=True)
class TrackEnd:
    """A track that ended (unseen for ``max_age_s`` or end of stream); reported once."""

    track_id: int
    confirmed: bool
    hits: int


@dataclass(frozen=True, slots=True)
class TrackStep:
    """Tracker output for one frame: matched faces and tracks that ended."""

    faces: list[TrackedFace]
    ended: list[TrackEnd]


@dataclass(frozen=True, slots=True)
class Scores:
    """Scores of a batch: ``raw`` as the model gives it, ``quality`` calibrated to 0–100;
    ``signature`` (N×D) where the quality model has a second output, an appearance
    embedding the selector compares one person's crops with (cr-fiqa-s v2)."""

    raw: FloatArray
    quality: FloatArray
    signature: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An aligned face crop with its scores: what the selector ranks."""

    stream_id: str
    track_id: int
    frame_index: int
    pts: int | None
    t: float
    wall_ms: int
    box: FloatArray
    landmarks: FloatArray
    det_score: float
    crop: ImageBGR
    quality: float
    quality_raw: float
    signature: FloatArray | None = None  # the quality model's appearance embedding, if any


@dataclass(frozen=True, slots=True)
class Origin:
    """Who emitted, under which lease (cluster mode): the worker's member id and the
    camera's epoch, a number that grows with every new lease of the camera. A consumer
    that has seen epoch E of a camera can drop entries of a smaller one (a stale owner)."""

    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Emission:
    """A crop chosen for the downstream recogniser (schema v1 of the Redis entry)."""

    emit_id: str
    reason: EmitReason
    rank: int
    candidate: Candidate
    model: str
    origin: Origin | None = None  # cluster mode only

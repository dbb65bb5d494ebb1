"""The learned CR-FIQA quality model: ONNX file + manifest, behind ``QualityScorer``.

A manifest (JSON, beside the ONNX file) names the model, its sha256, input spec and
normalisation, and the calibration: knots of a monotone piecewise-linear map from the
raw predicted certainty ratio to 0–100. Shipped models live in ``stream_gate/models/``;
``score.model`` may also be a path to a user's own manifest. The scorer here runs on
host arrays; torch.py runs the same model on the device.

Landmark guidance (manifest ``input.landmark_map``, version 2 models): a fourth input
channel, :func:`landmark_map`, draws the detector's five landmarks where they fall in the
aligned crop, each as a Gaussian as wide as one pixel of the source frame is there. The
positions carry the pose (a turned head moves the nose off the template), the widths the
resolution the crop was upsampled from (a small face's landmarks are wide blobs).

Size input (manifest ``input.size_plane``): one more channel, constant over the crop,
:func:`size_plane`: how many frame pixels one crop pixel stood for (log2). The 112-px
crop hides how many pixels the face had; issue 18's benchmark found that cue worth as
much as the model itself when fused by hand (``select.size_weight``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig
from stream_gate.errors import ModelError
from stream_gate.runtime import Model, load_model
from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE, CROP_SIZE, umeyama
from stream_gate.types import FloatArray, ImageBGR, Scores

SHIPPED = ("cr-fiqa-s-v2", "cr-fiqa-s")  # v2: quality (v1's, unchanged) + signature


def normalisation(mean: float = 0.5, std: float = 0.5) -> tuple[float, float]:
    """(a, b) with model input = pixel · a − b, i.e. (pixel / 255 − mean) / std: the one
    normalisation of the quality model's input, on the host and on the device."""
    return 1.0 / (255.0 * std), mean / std


def to_model_input(crops: Sequence[ImageBGR] | npt.NDArray[np.uint8],
                   mean: float = 0.5, std: float = 0.5) -> npt.NDArray[np.float32]:
    """BGR uint8 crops (N×112×112×3) -> RGB NCHW float32, (x/255 − mean)/std.

    The one preprocessing function shared by training, export checks and serving.
    """
    x = np.asarray(crops, dtype=np.uint8)
    if x.ndim == 3:
        x = x[None]
    chw = x[..., ::-1].transpose(0, 3, 1, 2)  # a uint8 view: reorder before widening
    a, b = normalisation(mean, std)
    out = np.empty(chw.shape, np.float32)
    np.multiply(chw, np.float32(a), out=out, casting="unsafe")
    out -= np.float32(b)
    return out


MAX_SIGMA_PX = 16.0  # wider blobs say nothing more: the face was tiny either way
SIZE_LOG2_RANGE = 3.0  # size plane: log2 frame px per crop px, clipped to ±this, then /this


def _in_crop(landmarks: Sequence[FloatArray] | npt.NDArray[np.float32],
             size_factor: npt.NDArray[np.floating] | None
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Where the aligner puts each face's five landmarks (frame pixels) in the crop
    (N×5×2), and how many crop pixels one of its frame pixels becomes (N; a face a
    training-time downscale shrank by f had 1/f times fewer pixels)."""
    lms = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    pts = np.empty_like(lms)
    per_px = np.empty(len(lms), np.float64)
    for i, lm in enumerate(lms):
        if not np.all(np.isfinite(lm)):
            raise ValueError("landmarks must be finite")
        m = umeyama(lm, ARCFACE_TEMPLATE)
        pts[i] = lm @ m[:, :2].T + m[:, 2]
        per_px[i] = np.sqrt(abs(np.linalg.det(m[:, :2].astype(np.float64))))
        if size_factor is not None:
            per_px[i] /= max(float(size_factor[i]), 1e-3)
    return pts, per_px


def _draw_landmarks(pts: npt.NDArray[np.float32], per_px: npt.NDArray[np.float64],
                    sigma_px: float) -> npt.NDArray[np.float32]:
    out = np.zeros((len(pts), 1, CROP_SIZE, CROP_SIZE), np.float32)
    grid = np.arange(CROP_SIZE, dtype=np.float32)
    for i, p in enumerate(pts):
        sigma = float(np.clip(sigma_px * per_px[i], 1.0, MAX_SIGMA_PX))
        gx = np.exp(-((grid[None, :] - p[:, :1]) ** 2) / (2 * sigma**2))  # 5×112
        gy = np.exp(-((grid[None, :] - p[:, 1:]) ** 2) / (2 * sigma**2))
        out[i, 0] = np.max(gy[:, :, None] * gx[:, None, :], axis=0)
    return out


def _fill_size(per_px: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    value = (np.clip(-np.log2(per_px), -SIZE_LOG2_RANGE, SIZE_LOG2_RANGE)
             / SIZE_LOG2_RANGE).astype(np.float32)
    return np.broadcast_to(value[:, None, None, None],
                           (len(value), 1, CROP_SIZE, CROP_SIZE)).copy()


def landmark_map(landmarks: Sequence[FloatArray] | npt.NDArray[np.float32],
                 sigma_px: float, size_factor: npt.NDArray[np.floating] | None = None
                 ) -> npt.NDArray[np.float32]:
    """N×1×112×112: the five landmarks (frame pixels) drawn where the aligner puts them
    in the crop, as Gaussians of σ = ``sigma_px`` × crop pixels per frame pixel, in
    [1, 16] px (the maximum of the five at each pixel, peak 1).

    ``size_factor`` (training only): a downscale degradation's factor per face; a face
    shrunk by f had 1/f times fewer pixels, so its blobs are 1/f times wider.
    """
    return _draw_landmarks(*_in_crop(landmarks, size_factor), sigma_px)


def size_plane(landmarks: Sequence[FloatArray] | npt.NDArray[np.float32],
               size_factor: npt.NDArray[np.floating] | None = None
               ) -> npt.NDArray[np.float32]:
    """N×1×112×112, constant per face: log2 of the frame pixels one crop pixel stood for,
    clipped to ±3 and scaled to ±1 (−1: a face 8× upsampled, 0: crop and face the same
    size, +1: 8× downsampled). ``size_factor`` as in :func:`landmark_map`."""
    return _fill_size(_in_crop(landmarks, size_factor)[1])


@dataclass(frozen=True, slots=True)
class Guidance:
    """The input planes a model takes beside the crop's RGB, in this order: the landmark
    map (``landmark_sigma_px``) and the size plane. None of either: a 3-channel model."""

    landmark_sigma_px: float | None = None
    size_plane: bool = False

    @property
    def channels(self) -> int:
        return 3 + (self.landmark_sigma_px is not None) + int(self.size_plane)

    def planes(self, landmarks: Sequence[FloatArray] | npt.NDArray[np.float32],
               size_factor: npt.NDArray[np.floating] | None = None
               ) -> npt.NDArray[np.float32] | None:
        """N×(channels − 3)×112×112 for faces with these frame ``landmarks``; None for a
        plain RGB model. ``size_factor``: training's downscale factors."""
        if self.channels == 3:
            return None
        pts, per_px = _in_crop(landmarks, size_factor)  # once for both planes
        parts = []
        if self.landmark_sigma_px is not None:
            parts.append(_draw_landmarks(pts, per_px, self.landmark_sigma_px))
        if self.size_plane:
            parts.append(_fill_size(per_px))
        return np.concatenate(parts, axis=1)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Monotone piecewise-linear map raw -> 0–100 (clamped outside the knots)."""

    raw: tuple[float, ...]
    quality: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.raw) != len(self.quality) or len(self.raw) < 2:
            raise ValueError("calibration needs two equally long knot lists (≥ 2 knots)")
        if any(b < a for a, b in pairwise(self.raw)) or any(
            b < a for a, b in pairwise(self.quality)
        ):
            raise ValueError("calibration knots must be non-decreasing")

    def __call__(self, raw: npt.NDArray[np.floating]) -> FloatArray:
        q = np.interp(np.asarray(raw, np.float64), self.raw, self.quality)
        return np.clip(q, 0.0, 100.0).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    file: Path
    sha256: str
    input_size: int
    mean: float
    std: float
    calibration: Calibration
    raw: dict[str, Any]
    guidance: Guidance = Guidance()  # input planes beside RGB (version 2 models)
    signature_dim: int | None = None  # a second output: the appearance signature (v2)

    @property
    def channels(self) -> int:
        """Input channels: RGB and the guidance planes."""
        return self.guidance.channels

    def inputs(self, crops: Sequence[ImageBGR] | npt.NDArray[np.uint8],
               landmarks: Sequence[FloatArray] | npt.NDArray[np.float32]
               ) -> npt.NDArray[np.float32]:
        """The model's input batch for aligned ``crops`` and their frame ``landmarks``."""
        x = to_model_input(crops, self.mean, self.std)
        guide = self.guidance.planes(landmarks)
        return x if guide is None else np.concatenate([x, guide], axis=1)

    @staticmethod
    def load(path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            norm = data["input"]["normalisation"]
            guide = data["input"].get("landmark_map")
            sized = data["input"].get("size_plane") is not None
            m = Manifest(
                name=data["name"], version=str(data["version"]),
                file=path.parent / data["file"], sha256=data["sha256"],
                input_size=int(data["input"]["size"]), mean=float(norm["mean"]),
                std=float(norm["std"]),
                calibration=Calibration(tuple(data["calibration"]["raw"]),
                                        tuple(data["calibration"]["quality"])),
                raw=data,
                guidance=Guidance(None if guide is None else float(guide["sigma_px"]), sized),
                signature_dim=(None if data.get("signature") is None
                               else int(data["signature"]["dim"])),
            )
            if m.channels != int(data["input"].get("channels", m.channels)):
                raise ValueError(f"input.channels {data['input']['channels']} but the "
                                 f"guidance named gives {m.channels}")
            return m
        except FileNotFoundError:
            raise ModelError(f"quality model manifest not found: {path}") from None
        except OSError as exc:  # a directory, no permission
            raise ModelError(f"score.model: cannot read {path}: {exc.strerror}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: bad quality model manifest: {exc!r}") from None


def manifest_path(model: str) -> Path:
    """The manifest of a shipped model name, or the path the user gave."""
    if model in SHIPPED:
        return Path(str(importlib.resources.files("stream_gate") / "models" / f"{model}.json"))
    return Path(model)


def load_quality_model(model: str) -> tuple[Manifest, bytes]:
    """The manifest of ``score.model`` and its ONNX bytes, checked against its sha256."""
    m = Manifest.load(manifest_path(model))
    try:
        blob = m.file.read_bytes()
    except OSError as exc:
        raise ModelError(f"quality model file {m.file}: {exc.strerror}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != m.sha256:
        raise ModelError(f"{m.file}: sha256 {digest[:12]}… does not match its manifest")
    return m, blob


def check_outputs(manifest: Manifest, output_names: Sequence[str]) -> None:
    """Fail at start-up when the model file lacks an output its manifest names."""
    wanted = 1 if manifest.signature_dim is None else 2
    if len(output_names) < wanted:
        raise ModelError(f"{manifest.file}: the manifest names {wanted} outputs (cr"
                         f"{', signature' if wanted == 2 else ''}), the model has "
                         f"{list(output_names)}")


def split_outputs(manifest: Manifest, outputs: Sequence[npt.NDArray[np.float32]]) -> Scores:
    """The model's outputs as Scores: calibrated quality, and the signature if it has one."""
    raw = np.asarray(outputs[0], np.float32).reshape(-1)
    sig = None
    if manifest.signature_dim is not None:
        sig = np.asarray(outputs[1], np.float32).reshape(len(raw), manifest.signature_dim)
    return Scores(raw=raw, quality=manifest.calibration(raw), signature=sig)


class CrFiqaScorer:
    """Scores aligned crops with the learned model; ``raw`` is the predicted CR."""

    def __init__(self, manifest: Manifest, model: Model) -> None:
        check_outputs(manifest, model.output_names)
        self.manifest = manifest
        self.model = model
        self.name = f"{manifest.name}@{manifest.version}"

    @staticmethod
    def load(model: str = "cr-fiqa-s-v2", runtime: RuntimeConfig | None = None,
             threads: int = 0) -> CrFiqaScorer:
        """The model ``score.model`` names, on host arrays (``runtime``: its engine,
        onnxruntime by default)."""
        manifest, blob = load_quality_model(model)
        return CrFiqaScorer(manifest, load_model(blob, manifest.name,
                                                 runtime or RuntimeConfig(), threads=threads))

    def score(self, crops: Sequence[ImageBGR], landmarks: Sequence[FloatArray]) -> Scores:
        if len(crops) == 0:
            return split_outputs(self.manifest, [
                np.zeros((0,), np.float32), np.zeros((0, self.manifest.signature_dim or 0),
                                                     np.float32)])
        return split_outputs(self.manifest,
                             self.model.infer(self.manifest.inputs(crops, landmarks)))

"""``stream-gate engines build|list|verify``: the TensorRT engine cache, ahead of a run.

- ``build`` builds (or finds up to date) the engines of the models a config uses, so the
  first camera does not wait minutes for a build; ``--calibrate VIDEO`` also builds the
  detector's int8 engine, calibrated on frames of that video (use your own cameras'
  footage), with its calibration cache kept for later builds.
- ``list`` shows what the cache holds (model, GPU, TensorRT version, precision, size);
  it needs no GPU.
- ``verify`` runs each engine next to onnxruntime on real frames and checks the GPU
  path's contract: the same faces (IoU ≥ 0.95), landmarks within 1 px, quality within
  1 point.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from stream_gate.config import DetectConfig, RuntimeConfig, Settings
from stream_gate.demo import render_sample_clip
from stream_gate.errors import ModelError
from stream_gate.geometry import iou_matrix
from stream_gate.runtime import Backend, choose_backend, require
from stream_gate.runtime.tensorrt import Calibration, calibration_cache, load_or_build
from stream_gate.stages.align_score import build_scorer
from stream_gate.stages.align_score.learned import load_quality_model
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.batch import build_batcher
from stream_gate.stages.detect import (
    build_detector,
    build_host_detector,
    centerface_onnx_bytes,
)
from stream_gate.stages.detect.yunet import yunet_onnx_bytes
from stream_gate.types import Detections, Frame, ImageBGR

CALIBRATION_FRAMES = 64
CALIBRATION_BATCH = 4


@dataclass(frozen=True)
class CachedEngine:
    """One engine file of the cache and what it was built for (its .json sidecar)."""

    path: Path
    model: str
    gpu: str
    tensorrt: str
    int8: bool
    size_mb: float


def list_engines(cfg: RuntimeConfig) -> list[CachedEngine]:
    """The engines in ``runtime.engine_cache``, newest first."""
    folder = cfg.engine_cache.expanduser()
    out: list[CachedEngine] = []
    for path in sorted(folder.glob("*.engine"), key=lambda p: -p.stat().st_mtime):
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            meta = {}
        out.append(CachedEngine(path, str(meta.get("model", "?")), str(meta.get("gpu", "?")),
                                str(meta.get("tensorrt", "?")), bool(meta.get("int8", False)),
                                round(path.stat().st_size / 2**20, 1)))
    return out


def format_list(engines: list[CachedEngine], folder: Path) -> str:
    if not engines:
        return f"no engines in {folder} (stream-gate engines build --config FILE)"
    rows = [f"{e.model:<18} {'int8' if e.int8 else 'fp16/32':<8} {e.gpu:<24} "
            f"TensorRT {e.tensorrt:<9} {e.size_mb:>7.1f} MB  {e.path.name}" for e in engines]
    return "\n".join([f"{len(engines)} engine(s) in {folder}:", *rows])


def read_frames(video: Path, n: int) -> list[ImageBGR]:
    """Up to ``n`` frames spread over ``video`` (every k-th, k from its frame count)."""
    try:
        with av.open(str(video)) as c:
            stream = c.streams.video[0]
            step = max(1, (stream.frames or n) // n)
            out: list[ImageBGR] = [np.asarray(f.to_ndarray(format="bgr24"), np.uint8)
                                   for i, f in enumerate(c.decode(stream)) if i % step == 0]
    except (av.error.FFmpegError, IndexError) as exc:
        raise ModelError(f"cannot read frames from {video}: {exc}") from None
    if not out:
        raise ModelError(f"{video} has no video frames")
    return out[:n]


def detect_frames(settings: Settings, backend: Backend, images: list[ImageBGR]
                  ) -> list[Detections]:
    """The fp32 detector of ``settings`` on ``backend``, on ``images`` as one batch."""
    frames = [Frame("verify", i, None, 0.0, 0, im) for i, im in enumerate(images)]
    cfg = settings.detect.model_copy(update={"precision": "fp32"})
    return build_detector(cfg, backend).detect(build_batcher(cfg, backend).pack(frames))


def calibration_batches(cfg: DetectConfig, frames: list[ImageBGR]
                        ) -> list[npt.NDArray[np.float32]]:
    """Detector input batches made exactly as at run time (letterboxed, same size)."""
    prep = build_host_detector(cfg.model_copy(update={"precision": "fp32"}))
    same = [f for f in frames if f.shape == frames[0].shape]
    return [prep.prepare(same[i:i + CALIBRATION_BATCH])[0]
            for i in range(0, len(same) - CALIBRATION_BATCH + 1, CALIBRATION_BATCH)]


def build(settings: Settings, calibrate: Path | None = None) -> list[Path]:
    """Build (or find current) the engines ``settings`` uses; int8 detector with ``calibrate``."""
    require("tensorrt")
    rt = settings.runtime.model_copy(update={"engine": "tensorrt"})
    models = [(yunet_onnx_bytes(settings.detect.model_path), "yunet")
              if settings.detect.model == "yunet" else (centerface_onnx_bytes(), "centerface")]
    if settings.score.model != "heuristic":
        manifest, blob = load_quality_model(settings.score.model)
        models.append((blob, manifest.name))
    paths = [load_or_build(blob, name, rt)[1] for blob, name in models]
    if calibrate is not None:
        if settings.detect.model != "centerface":
            raise ModelError("--calibrate: int8 engines are built for CenterFace only")
        onnx = centerface_onnx_bytes()
        batches = calibration_batches(settings.detect, read_frames(calibrate, CALIBRATION_FRAMES))
        if not batches:
            raise ModelError(f"{calibrate}: fewer than {CALIBRATION_BATCH} frames to calibrate on")
        calib = Calibration(batches, calibration_cache(onnx, "centerface", rt))
        paths.append(load_or_build(onnx, "centerface", rt, calib)[1])
    return paths


SURE = 0.5  # reference faces compared: those detected with at least this score


@dataclass(frozen=True)
class FaceAgreement:
    """How one frame's confident reference faces are found in another run's detections."""

    ious: list[float]  # each reference face's best IoU with the other run's faces
    max_landmark_px: float  # worst landmark distance to that best match (inf: no match)
    one_to_one: bool  # no two reference faces matched the same face


def face_agreement(ref: Detections, got: Detections) -> FaceAgreement:
    """Match the reference faces (score > ``SURE``) to ``got`` by IoU."""
    sure = np.flatnonzero(ref.scores > SURE)
    if not len(sure) or not len(got):
        return FaceAgreement([0.0] * len(sure), float("inf") if len(sure) else 0.0,
                             not len(sure))
    iou = iou_matrix(ref.boxes[sure], got.boxes)
    j = iou.argmax(axis=1)
    return FaceAgreement(iou.max(axis=1).tolist(),
                         float(np.abs(ref.landmarks[sure] - got.landmarks[j]).max()),
                         len(set(j.tolist())) == len(j))


@dataclass(frozen=True)
class Verdict:
    """How a GPU engine compares with onnxruntime on the same frames."""

    faces: int
    min_iou: float
    max_landmark_px: float
    max_quality_diff: float
    one_to_one: bool = True

    @property
    def ok(self) -> bool:
        return self.min_iou >= 0.95 and self.max_landmark_px <= 1.0 \
            and self.max_quality_diff <= 1.0 and self.one_to_one


def verify(settings: Settings, media: Path | None = None) -> Verdict:
    """The engines of ``settings`` against onnxruntime on frames of ``media`` (default:
    the demo clip, rendered on the fly)."""
    require("tensorrt")
    cpu_backend = choose_backend(RuntimeConfig())
    gpu_backend = choose_backend(settings.runtime.model_copy(update={"engine": "tensorrt"}))
    if media is None:
        media = render_sample_clip(Path(tempfile.mkdtemp()) / "sample.mp4", seconds=2.0)
    frames = read_frames(media, 8)
    cpu = detect_frames(settings, cpu_backend, frames)
    gpu = detect_frames(settings, gpu_backend, frames)
    cpu_q = build_scorer(settings.score, cpu_backend)
    gpu_q = build_scorer(settings.score, gpu_backend)
    agreements = [face_agreement(a, b) for a, b in zip(cpu, gpu, strict=True)]
    ious = [v for agree in agreements for v in agree.ious]
    if not ious:
        raise ModelError(f"{media}: no face to verify on")
    quality: list[float] = []
    for image, a in zip(frames, cpu, strict=True):
        lms = [a.landmarks[k] for k in np.flatnonzero(a.scores > SURE)]
        if lms:  # the same crops scored by both runtimes
            crops = [align_face(image, lm)[0] for lm in lms]
            diff = cpu_q.score(crops, lms).quality - gpu_q.score(crops, lms).quality
            quality.append(float(np.abs(diff).max()))
    return Verdict(len(ious), min(ious), max(a.max_landmark_px for a in agreements),
                   max(quality), all(a.one_to_one for a in agreements))

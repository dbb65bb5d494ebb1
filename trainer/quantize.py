"""int8 CenterFace: static QDQ quantisation calibrated on real frames, checked for recall.

``python -m trainer quantize-detector`` takes every 10th frame of the videos in
``../shared/data/media``; the even-numbered videos calibrate the activation ranges, the
odd-numbered ones measure how many of the fp32 detector's faces (score > 0.5) the int8
one still finds (IoU > 0.5) and how far its landmarks move. The file is written only when
recall is at least ``min_recall`` of fp32; its report goes next to it as JSON.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from stream_gate.config import DetectConfig
from stream_gate.geometry import iou_matrix
from stream_gate.runtime.ort import OrtModel
from stream_gate.stages.detect import FaceDetector, build_host_detector, centerface_onnx_bytes
from stream_gate.types import ImageBGR

CALIBRATION_SIDE = 960  # the detector size of 1080p cameras with the default min_face_px


def sample_frames(videos: Sequence[Path], every: int = 10, per_video: int = 12
                  ) -> list[ImageBGR]:
    """Every ``every``-th frame of each video, at most ``per_video`` from one."""
    out: list[ImageBGR] = []
    for path in videos:
        with av.open(str(path)) as c:
            n = 0
            for i, f in enumerate(c.decode(video=0)):
                if i % every == 0:
                    out.append(f.to_ndarray(format="bgr24"))
                    n += 1
                if n >= per_video:
                    break
    return out


class _Frames(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, det: FaceDetector, frames: Sequence[ImageBGR], name: str) -> None:
        self._batches = iter([det.prepare([f])[0] for f in frames])
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._batches, None)
        return None if b is None else {self._name: b}


def quantize(calibration: Sequence[ImageBGR], out: Path) -> Path:
    """Write the int8 CenterFace calibrated on ``calibration`` frames to ``out``."""
    det = build_host_detector(DetectConfig(max_side=CALIBRATION_SIDE), precise=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Per-channel weights need DequantizeLinear's axis attribute: opset 13.
        fp32 = version_converter.convert_version(onnx.load_from_string(centerface_onnx_bytes()), 13)
        src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(fp32, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Frames(det, calibration, fp32.graph.input[0].name),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def compare(model: Path, frames: Sequence[ImageBGR]) -> dict[str, Any]:
    """Recall of the fp32 detector's sure faces by the int8 model, and landmark drift."""
    fp32 = build_host_detector(DetectConfig(max_side=CALIBRATION_SIDE), precise=True)
    int8 = build_host_detector(DetectConfig(max_side=CALIBRATION_SIDE), precise=True)
    int8.model = OrtModel(model.read_bytes(), model.name)
    found = total = 0
    drift: list[float] = []
    for f in frames:
        a, b = fp32.detect_images([f])[0], int8.detect_images([f])[0]
        sure = np.flatnonzero(a.scores > 0.5)
        total += len(sure)
        if not len(sure) or not len(b):
            continue
        iou = iou_matrix(a.boxes[sure], b.boxes)
        for k, s in enumerate(sure):
            j = int(np.argmax(iou[k]))
            if iou[k, j] > 0.5:
                found += 1
                eye = max(float(np.linalg.norm(a.landmarks[s, 1] - a.landmarks[s, 0])), 1.0)
                drift.append(float(np.abs(b.landmarks[j] - a.landmarks[s]).max()) / eye)
    return {"faces": total, "found": found, "recall": round(found / max(total, 1), 4),
            "landmark_drift_eye_fraction": {
                "mean": round(float(np.mean(drift)), 4) if drift else None,
                "p95": round(float(np.percentile(drift, 95)), 4) if drift else None}}


def build(videos: Sequence[Path], out: Path, min_recall: float = 0.98) -> dict[str, Any]:
    """Calibrate on half the videos, check recall on the other half, keep or refuse."""
    videos = sorted(videos)
    calib, held = videos[0::2], videos[1::2]
    print(f"quantize-detector: calibrating on {len(calib)} videos", flush=True)
    tmp = out.with_suffix(".tmp.onnx")
    quantize(sample_frames(calib), tmp)
    print(f"quantize-detector: checking recall on {len(held)} other videos", flush=True)
    report = compare(tmp, sample_frames(held))
    report.update(calibration=[v.name for v in calib], held_out=[v.name for v in held],
                  detector_side=CALIBRATION_SIDE, min_recall=min_recall,
                  sha256=hashlib.sha256(tmp.read_bytes()).hexdigest())
    if report["recall"] < min_recall:
        tmp.unlink()
        raise SystemExit(f"int8 recall {report['recall']} < {min_recall}: not written")
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return report

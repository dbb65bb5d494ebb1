"""The int8 detector: shipped as the default frame-wide pass, and rebuilt by the trainer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream_gate.config import DetectConfig
from stream_gate.geometry import iou_matrix
from stream_gate.runtime.ort import cpu_has_vnni
from stream_gate.stages.detect import CenterFaceDetector, FaceDetector, build_host_detector

from .conftest import ROOT
from .test_detect import frames_of

CROWD = "crowd_walking_1080p.mp4"


def recall(ref: FaceDetector, other: FaceDetector, frames: list[np.ndarray]
           ) -> float:
    found = total = 0
    for f in frames:
        a, b = ref.detect_images([f])[0], other.detect_images([f])[0]
        sure = a.boxes[a.scores > 0.5]
        total += len(sure)
        if len(sure) and len(b):
            found += int((iou_matrix(sure, b.boxes).max(axis=1) > 0.5).sum())
    assert total >= 5
    return found / total


def test_shipped_int8_detector_keeps_the_faces(media: Callable[[str], Path]) -> None:
    frames = frames_of(media(CROWD), {0, 50, 100})
    int8 = build_host_detector(DetectConfig(max_side=960, precision="int8"))
    assert int8.model.name == "centerface-int8"
    fp32 = build_host_detector(DetectConfig(max_side=960, precision="fp32"))
    assert fp32.model.name == "centerface"
    assert isinstance(int8, CenterFaceDetector) and isinstance(fp32, CenterFaceDetector)
    assert recall(fp32, int8, frames) >= 0.98
    report = json.loads((ROOT / "stream_gate" / "models" / "centerface-int8.json").read_text())
    assert report["recall"] >= report["min_recall"] == 0.98


def test_auto_precision_runs_int8_only_where_the_cpu_has_vnni(tmp_path: Path) -> None:
    """The default: int8 on a CPU whose int8 dot products do not saturate, else fp32."""
    vnni, avx2 = tmp_path / "vnni", tmp_path / "avx2"
    vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_vnni(vnni) and not cpu_has_vnni(avx2)
    assert not cpu_has_vnni(tmp_path / "absent")
    auto = build_host_detector(DetectConfig())
    assert auto.model.name == ("centerface-int8" if cpu_has_vnni() else "centerface")
    assert auto.quantized == cpu_has_vnni()


@pytest.mark.slow
def test_trainer_quantizes_and_checks_recall(media: Callable[[str], Path], tmp_path: Path
                                             ) -> None:
    from stream_gate.runtime.ort import OrtModel
    from trainer.quantize import compare, quantize

    frames = frames_of(media(CROWD), {0, 40, 80})
    out = quantize(frames[:2], tmp_path / "cf8.onnx")
    assert 1_000_000 < out.stat().st_size < 3_000_000  # int8 weights: ~1/3.5 of fp32
    report = compare(out, frames[2:])
    assert report["faces"] >= 5 and report["recall"] >= 0.9
    det = build_host_detector(DetectConfig(max_side=960), precise=True)
    det.model = OrtModel(out.read_bytes(), "cf8")
    assert len(det.detect_images([frames[2]])[0]) >= 5

"""One grid_sample aligns every face of a batch like the per-face OpenCV warp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream_gate.config import DetectConfig
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.align_score.torch import align_batch
from stream_gate.stages.detect import build_host_detector

from .test_detect import frames_of

torch = pytest.importorskip("torch", reason="PyTorch is not installed (train/gpu extras)")


def _check(device: str, media: Callable[[str], Path]) -> None:
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 60})
    dets = build_host_detector(DetectConfig(max_side=960, precision="fp32")).detect_images(frames)
    faces = [(fi, lm) for fi, d in enumerate(dets) for lm in d.landmarks]
    assert len(faces) >= 10 and len({fi for fi, _ in faces}) == 2
    stack = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().to(device)
    crops = align_batch(stack, faces).round().clamp(0, 255).byte()
    crops = crops.permute(0, 2, 3, 1).cpu().numpy()
    for (fi, lm), got in zip(faces, crops, strict=True):
        want = align_face(frames[fi], lm)[0]
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert diff.mean() <= 1.0, diff.mean()  # the done-when bound: 1 grey level


def test_batched_alignment_matches_opencv_on_cpu(media: Callable[[str], Path]) -> None:
    _check("cpu", media)


@pytest.mark.gpu
def test_batched_alignment_matches_opencv_on_cuda(media: Callable[[str], Path]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")
    _check("cuda", media)

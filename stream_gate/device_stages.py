"""Alignment and quality scoring on the model's device (torch engine, or TensorRT with
PyTorch on the GPU).

On the CPU path each face is warped with OpenCV and the crops are stacked for the quality
model. Here the batch's frames, uploaded once (see :func:`upload_frames`, shared with the
detector), are aligned all at once with ``grid_sample`` (batch_align.py) and go straight
into the quality model on the same device; only the 112×112 crops (for publishing) and
the scores come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stream_gate.batch_align import align_batch
from stream_gate.errors import ModelError
from stream_gate.quality_model import CrFiqaScorer
from stream_gate.refine import Refiner
from stream_gate.runtime import device_of
from stream_gate.types import Detections, FloatArray, ImageBGR, Scores


def upload_frames(images: Sequence[ImageBGR], device: torch.device) -> list[torch.Tensor]:
    """Frames as uint8 HWC tensors on ``device``: one copy per frame size, pinned on CUDA."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    pin = device.type == "cuda"
    for idx in by_shape.values():
        host = torch.from_numpy(np.stack([images[i] for i in idx]))
        dev = (host.pin_memory() if pin else host).to(device, non_blocking=True)
        for n, i in enumerate(idx):
            out[i] = dev[n]
    return out


class DeviceAlignScore:
    """Batched alignment + CR-FIQA scoring of faces on frames already on the device."""

    def __init__(self, scorer: CrFiqaScorer) -> None:
        self.device = device_of(scorer.model)
        if self.device is None:
            raise ModelError(f"{scorer.name}: the quality model does not run on a torch device")
        self.scorer = scorer
        self.model: Any = scorer.model

    def crops(self, frames: Sequence[torch.Tensor], faces: Sequence[tuple[int, FloatArray]]
              ) -> torch.Tensor:
        """Aligned crops (N×3×112×112, BGR, whole grey levels as float) in ``faces`` order."""
        out = torch.zeros((len(faces), 3, 112, 112), device=self.device)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for fi in sorted({fi for fi, _ in faces}):
            by_shape.setdefault(tuple(frames[fi].shape), []).append(fi)
        for group in by_shape.values():  # frames of one size: one grid_sample call
            slot = {fi: n for n, fi in enumerate(group)}
            stack = torch.stack([frames[fi] for fi in group]).permute(0, 3, 1, 2).float()
            idx = [i for i, (fi, _) in enumerate(faces) if fi in slot]
            got = align_batch(stack, [(slot[faces[i][0]], faces[i][1]) for i in idx])
            out[torch.as_tensor(idx, device=self.device)] = got
        return out.add_(0.5).floor_().clamp_(0, 255)  # the uint8 crop the CPU path scores

    def run(self, frames: Sequence[torch.Tensor], faces: Sequence[tuple[int, FloatArray]]
            ) -> tuple[list[ImageBGR], Scores]:
        """Crops (host, HWC BGR uint8, for publishing) and their scores."""
        if not faces:
            empty = np.zeros((0,), np.float32)
            return [], Scores(raw=empty, quality=empty)
        crops = self.crops(frames, faces)
        m = self.scorer.manifest
        x = (crops.flip(1) / 255.0 - m.mean) / m.std  # BGR -> RGB, as to_model_input
        raw = self.model.infer_tensor(x)[0].reshape(-1).cpu().numpy().astype(np.float32)
        host = crops.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return list(host), Scores(raw=raw, quality=m.calibration(raw))


def area_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """n_out × n_in matrix of OpenCV's INTER_AREA shrink: each output pixel averages the
    input span it covers, with fractional weights at the span's ends."""
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64) * scale
    j = torch.arange(n_in, dtype=torch.float64)
    overlap = (torch.minimum(j[None] + 1, lo[:, None] + scale)
               - torch.maximum(j[None], lo[:, None])).clamp(min=0)
    return (overlap / scale).to(device, torch.float32)


def resize_like_opencv(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A C×H×W float image resized to h×w as the CPU path's ``cv2.resize`` does it: area
    averaging when shrinking (as two small matrix products), bilinear when growing;
    rounded to whole grey levels like OpenCV's uint8 output."""
    if x.shape[1] == h and x.shape[2] == w:
        return x
    if x.shape[1] >= h and x.shape[2] >= w:
        if x.shape[1] % h == 0 and x.shape[2] % w == 0:  # whole factors: OpenCV's fast path
            out = F.avg_pool2d(x[None], (x.shape[1] // h, x.shape[2] // w))[0]
        else:
            out = area_weights(x.shape[1], h, x.device) @ x @ \
                area_weights(x.shape[2], w, x.device).T
    else:
        out = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return out.add_(0.5).floor_().clamp_(0, 255)


class DeviceRefiner(Refiner):
    """Refinement with its crops cut and resized on the device from the uploaded frames;
    only the crops' small output maps come back to be decoded."""

    def refine(self, jobs: Sequence[tuple[ImageBGR, FloatArray]],
               on_device: Sequence[Any] | None = None) -> list[Detections]:
        if on_device is None or not jobs:
            return super().refine(jobs)
        model: Any = self.detector.model
        batch = torch.empty((len(jobs), 3, self.size, self.size), device=model.device,
                            dtype=model.dtype)
        where: list[tuple[float, int, int]] = []
        for i, ((_, box), frame) in enumerate(zip(jobs, on_device, strict=True)):
            side, x0, y0 = self.window(box)
            h, w = frame.shape[:2]
            region = frame[max(y0, 0):min(y0 + side, h), max(x0, 0):min(x0 + side, w)]
            x = region.permute(2, 0, 1).float()
            # Black outside the frame, as the CPU path pads (left, right, top, bottom).
            x = F.pad(x, (max(-x0, 0), side - x.shape[2] - max(-x0, 0),
                          max(-y0, 0), side - x.shape[1] - max(-y0, 0)))
            x = resize_like_opencv(x, self.size, self.size)
            batch[i] = (x.flip(0) if self.detector.rgb else x).to(batch.dtype)
            where.append((self.size / side, x0, y0))
        heads = [h.cpu().numpy() for h in model.infer_tensor(batch)]
        return [self.pick(heads, i, job, wh) for i, (job, wh) in
                enumerate(zip(jobs, where, strict=True))]

"""Alignment and quality scoring on the model's device (torch engine, or TensorRT with
PyTorch on the GPU).

On the CPU path each face is warped with OpenCV and the crops are stacked for the quality
model. Here the batch's frames, uploaded once (see :func:`upload_frames`, shared with the
detector), are aligned all at once with ``grid_sample`` (batch_align.py) and go straight
into the quality model on the same device; only the 112×112 crops (for publishing) and
the scores come back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stream_gate.align import CROP_SIZE
from stream_gate.batch_align import align_batch
from stream_gate.errors import ModelError
from stream_gate.groups import group_by
from stream_gate.quality_model import CrFiqaScorer
from stream_gate.refine import Refiner, Window, by_output
from stream_gate.runtime import device_of
from stream_gate.runtime.cuda_graphs import MAX_BATCH
from stream_gate.types import Detections, FloatArray, ImageBGR, Scores


def by_shape(images: Sequence[Any], indices: Iterable[int] | None = None
             ) -> dict[tuple[int, ...], list[int]]:
    """The indices of ``images`` (all, or ``indices``) grouped by image shape, in order:
    the frames of one camera size are batched together on the device."""
    return group_by(range(len(images)) if indices is None else indices,
                    lambda i: tuple(images[i].shape))


def upload_frames(images: Sequence[ImageBGR], device: torch.device) -> list[torch.Tensor]:
    """Frames as uint8 HWC tensors on ``device``: one copy per frame size, pinned on CUDA."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(images)
    pin = device.type == "cuda"
    for idx in by_shape(images).values():
        host = torch.from_numpy(np.stack([images[i] for i in idx]))
        dev = (host.pin_memory() if pin else host).to(device, non_blocking=True)
        for n, i in enumerate(idx):
            out[i] = dev[n]
    return out


def warm_model(model: Any, item_shape: tuple[int, ...], up_to: int) -> None:
    """Warm ``model`` up for batches of 1..``up_to`` items of ``item_shape`` where its
    engine needs it (the torch engine on a GPU: see TorchModel.warm)."""
    warm = getattr(model, "warm", None)
    if warm is not None:
        warm(item_shape, up_to)


class DeviceAlignScore:
    """Batched alignment + CR-FIQA scoring of faces on frames already on the device."""

    def __init__(self, scorer: CrFiqaScorer) -> None:
        self.device = device_of(scorer.model)
        if self.device is None:
            raise ModelError(f"{scorer.name}: the quality model does not run on a torch device")
        self.scorer = scorer
        self.model: Any = scorer.model
        warm_model(self.model, (3, CROP_SIZE, CROP_SIZE), MAX_BATCH)

    def crops(self, frames: Sequence[torch.Tensor], faces: Sequence[tuple[int, FloatArray]]
              ) -> torch.Tensor:
        """Aligned crops (N×3×112×112, BGR, whole grey levels as float) in ``faces`` order."""
        out = torch.zeros((len(faces), 3, 112, 112), device=self.device)
        # Frames of one size: one grid_sample call.
        for group in by_shape(frames, sorted({fi for fi, _ in faces})).values():
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


@functools.lru_cache(maxsize=64)
def area_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """n_out × n_in matrix of OpenCV's INTER_AREA shrink: each output pixel averages the
    input span it covers, with fractional weights at the span's ends (cached: a camera's
    frames are all one size)."""
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64) * scale
    j = torch.arange(n_in, dtype=torch.float64)
    overlap = (torch.minimum(j[None] + 1, lo[:, None] + scale)
               - torch.maximum(j[None], lo[:, None])).clamp(min=0)
    return (overlap / scale).to(device, torch.float32)


def resize_like_opencv(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A C×H×W (or N×C×H×W) float image resized to h×w as the CPU path's ``cv2.resize``
    does it: area averaging when shrinking (as two small matrix products), bilinear when
    growing; rounded to whole grey levels like OpenCV's uint8 output."""
    in_h, in_w = x.shape[-2:]
    if in_h == h and in_w == w:
        return x
    batched = x if x.dim() == 4 else x[None]
    if in_h >= h and in_w >= w:
        if in_h % h == 0 and in_w % w == 0:  # whole factors: OpenCV's fast path
            out = F.avg_pool2d(batched, (in_h // h, in_w // w))
        else:
            out = area_weights(in_h, h, x.device) @ batched @ \
                area_weights(in_w, w, x.device).T
    else:
        out = F.interpolate(batched, size=(h, w), mode="bilinear", align_corners=False)
    out = out.add_(0.5).floor_().clamp_(0, 255)
    return out if x.dim() == 4 else out[0]


class DeviceRefiner(Refiner):
    """Refinement with its crops cut and resized on the device from the uploaded frames;
    only the crops' small output maps come back to be decoded. Crops of one size from
    frames of one size (in a crowd most faces are small and get the same native window)
    are cut with one gather and resized with one call, not face by face. Windows are
    not shared between faces here: every window keeps one of two input sizes, for which
    the model is warmed up (and its CUDA graphs captured) once, where a shared window
    of a new size would cost cuDNN ~1 s live."""

    share = False

    def refine(self, jobs: Sequence[tuple[ImageBGR, FloatArray]],
               on_device: Sequence[Any] | None = None) -> list[Detections]:
        if on_device is None or not jobs:
            return super().refine(jobs)
        model: Any = self.detector.model
        for out in (self.size, self.small):  # both input sizes at once: no stall later
            warm_model(model, (3, out, out), MAX_BATCH)
        windows = self.plan(jobs)
        found = [Detections.empty()] * len(jobs)
        for (out_h, out_w), idx in by_output(windows).items():  # a batch per input size
            batch = torch.empty((len(idx), 3, out_h, out_w), device=model.device,
                                dtype=model.dtype)
            slot = {i: n for n, i in enumerate(idx)}
            cuts = group_by(idx, lambda i: (tuple(on_device[i].shape), windows[i].w,
                                            windows[i].h))  # frame size, window size
            for members in cuts.values():
                batch[[slot[i] for i in members]] = self._cut(
                    [on_device[i] for i in members], [windows[i] for i in members]
                ).to(batch.dtype)
            heads = [h.cpu().numpy() for h in model.infer_tensor(batch)]
            for n, i in enumerate(idx):
                found[i] = self.pick(heads, n, jobs[i], windows[i])
        return found

    def _cut(self, frames: Sequence[torch.Tensor], windows: Sequence[Window]) -> torch.Tensor:
        """The ``windows`` (all of one size and input size) of same-size frames, black
        outside the frame as the CPU path pads, at the detector's input size:
        n×3×out_h×out_w, the detector's colour order."""
        first = windows[0]
        unique = {id(f): f for f in frames}
        slot = {key: n for n, key in enumerate(unique)}
        stack = torch.stack(list(unique.values()))  # f × H × W × 3, uint8
        dev, (h, w) = stack.device, stack.shape[1:3]
        rows = torch.tensor([win.y0 for win in windows], device=dev)[:, None] \
            + torch.arange(first.h, device=dev)
        cols = torch.tensor([win.x0 for win in windows], device=dev)[:, None] \
            + torch.arange(first.w, device=dev)
        inside = (((rows >= 0) & (rows < h))[:, :, None]
                  & ((cols >= 0) & (cols < w))[:, None, :])
        which = torch.tensor([slot[id(f)] for f in frames], device=dev)[:, None, None]
        px = stack[which, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
        x = (px * inside[..., None]).permute(0, 3, 1, 2).float()
        x = resize_like_opencv(x, first.out_h, first.out_w)
        return x.flip(1) if self.detector.rgb else x

"""Torch helpers shared by the stages' torch backends: upload, grouping, OpenCV-exact resize.

Frames are uploaded once per batch (uint8, a quarter of the float size) by
:func:`upload_frames`; the detect, refine and align_score torch backends then work on
those tensors. :func:`resize_like_opencv` resizes exactly as the host path's
``cv2.resize`` does, so both backends see the same pixels (a borderline face otherwise
tips NMS the other way).

Imported only by torch backends: the CPU install does not need PyTorch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stream_gate.geometry import group_by
from stream_gate.types import ImageBGR


def by_shape(images: Sequence[torch.Tensor] | Sequence[ImageBGR],
             indices: Iterable[int] | None = None) -> dict[tuple[int, ...], list[int]]:
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

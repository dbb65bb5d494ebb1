"""Align every face of a batch with one ``grid_sample`` call (PyTorch; CUDA or CPU).

The GPU path keeps frames on the device: instead of one ``cv2.warpAffine`` per face on
the host, the similarity transforms of all faces (the same Umeyama fit as align.py) become
one sampling grid and one ``torch.nn.functional.grid_sample`` over the stacked frames.
Faces of one frame are laid side by side in that frame's grid (K slots of 112×112; empty
slots sample outside the image and stay black), so frames are never copied per face.

PyTorch is imported on first use: it is not a dependency of the CPU install.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stream_gate.align import ARCFACE_TEMPLATE, CROP_SIZE, umeyama
from stream_gate.types import FloatArray


def grid_theta(m: FloatArray, in_hw: tuple[int, int], out: int = CROP_SIZE
               ) -> FloatArray:
    """``affine_grid`` theta (crop -> frame, normalised, align_corners=False) for the
    OpenCV matrix ``m`` (frame -> crop pixels)."""
    inv = np.linalg.inv(np.vstack([m.astype(np.float64), [0.0, 0.0, 1.0]]))[:2]
    a, b = inv[:, :2], inv[:, 2]
    h, w = in_hw
    d_out = np.diag([out / 2, out / 2])
    c_out = np.array([(out - 1) / 2, (out - 1) / 2])
    d_in_inv = np.diag([2 / w, 2 / h])
    c_in = np.array([(w - 1) / 2, (h - 1) / 2])
    return np.hstack([d_in_inv @ a @ d_out, (d_in_inv @ (a @ c_out + b - c_in))[:, None]]
                     ).astype(np.float32)


def align_batch(frames: Any, faces: Sequence[tuple[int, FloatArray]]) -> Any:
    """Aligned crops (N×3×112×112 float, 0–255) of ``faces`` = (frame index, landmarks).

    ``frames`` is a B×3×H×W float tensor (all frames one size) on any device; the crops
    come back on the same device, in the order of ``faces``.
    """
    import torch
    import torch.nn.functional as F

    n = len(faces)
    b, _, h, w = frames.shape
    if n == 0:
        return frames.new_zeros((0, 3, CROP_SIZE, CROP_SIZE))
    slot = np.zeros(n, np.int64)
    count = np.zeros(b, np.int64)
    for i, (fi, _) in enumerate(faces):
        slot[i] = count[fi]
        count[fi] += 1
    k = int(count.max())
    theta = np.zeros((b, k, 2, 3), np.float32)
    theta[:, :, :, 2] = 4.0  # empty slots sample far outside the frame: black
    for i, (fi, lm) in enumerate(faces):
        theta[fi, slot[i]] = grid_theta(umeyama(lm, ARCFACE_TEMPLATE), (h, w))
    th = torch.from_numpy(theta).to(frames.device).reshape(b * k, 2, 3)
    grid = F.affine_grid(th, [b * k, 3, CROP_SIZE, CROP_SIZE], align_corners=False)
    # One grid per frame: its K face grids side by side along the width.
    grid = grid.reshape(b, k, CROP_SIZE, CROP_SIZE, 2).permute(0, 2, 1, 3, 4)
    grid = grid.reshape(b, CROP_SIZE, k * CROP_SIZE, 2).to(frames.dtype)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)  # b × 3 × 112 × (k·112)
    out = out.reshape(b, 3, CROP_SIZE, k, CROP_SIZE).permute(0, 3, 1, 2, 4)
    idx = torch.as_tensor([fi for fi, _ in faces], device=frames.device)
    return out[idx, torch.as_tensor(slot, device=frames.device)]

"""Alignment and scoring on the backend's device (torch engine, or TensorRT with PyTorch
on CUDA), from the frames the batch stage uploaded.

Instead of one ``cv2.warpAffine`` per face on the host, the similarity transforms of all
faces (the same Umeyama fit as template.py) become one sampling grid and one
``torch.nn.functional.grid_sample`` over the stacked frames. Faces of one frame are laid
side by side in that frame's grid (K slots of 112×112; empty slots sample outside the
image and stay black), so frames are never copied per face. The learned model scores the
crops where they are; only the 112×112 crops (for publishing) and the scores come back.
The heuristic scorer scores the crops on the host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from stream_gate.runtime import DeviceModel
from stream_gate.runtime.cuda_graphs import MAX_BATCH
from stream_gate.runtime.torch_ops import by_shape
from stream_gate.stages.align_score.learned import CrFiqaScorer, normalisation, split_outputs
from stream_gate.stages.align_score.scored import Face, QualityScorer, ScoredCrops
from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE, CROP_SIZE, umeyama
from stream_gate.types import FloatArray, FrameBatch, Scores


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


def align_batch(frames: torch.Tensor, faces: Sequence[Face]) -> torch.Tensor:
    """Aligned crops (N×3×112×112 float, 0–255) of ``faces`` = (frame index, landmarks).

    ``frames`` is a B×3×H×W float tensor (all frames one size) on any device; the crops
    come back on the same device, in the order of ``faces``.
    """
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


class DeviceAlignScore:
    """Batched alignment on the device; ``scorer`` scores the crops on the host."""

    def __init__(self, device: torch.device, scorer: QualityScorer) -> None:
        self.device = device
        self.scorer = scorer
        self.name = scorer.name

    def crops(self, frames: Sequence[torch.Tensor], faces: Sequence[Face]) -> torch.Tensor:
        """Aligned crops (N×3×112×112, BGR, whole grey levels as float) in ``faces`` order."""
        out = torch.zeros((len(faces), 3, CROP_SIZE, CROP_SIZE), device=self.device)
        # Frames of one size: one grid_sample call.
        for group in by_shape(frames, sorted({fi for fi, _ in faces})).values():
            slot = {fi: n for n, fi in enumerate(group)}
            stack = torch.stack([frames[fi] for fi in group]).permute(0, 3, 1, 2).float()
            idx = [i for i, (fi, _) in enumerate(faces) if fi in slot]
            got = align_batch(stack, [(slot[faces[i][0]], faces[i][1]) for i in idx])
            out[torch.as_tensor(idx, device=self.device)] = got
        return out.add_(0.5).floor_().clamp_(0, 255)  # the uint8 crop the host path scores

    def run(self, batch: FrameBatch, faces: Sequence[Face]) -> ScoredCrops:
        if batch.device is None:
            raise ValueError("device alignment needs the batch's frames on its device")
        if not faces:
            return ScoredCrops.empty()
        t0 = time.perf_counter()
        crops = self.crops(batch.device, faces)
        host = list(crops.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        t1 = time.perf_counter()
        scores = self.score(crops, host, [lm for _, lm in faces])
        return ScoredCrops(host, scores, {"align": t1 - t0, "score": time.perf_counter() - t1})

    def score(self, crops: torch.Tensor, host: list[npt.NDArray[np.uint8]],
              landmarks: list[FloatArray]) -> Scores:
        return self.scorer.score(host, landmarks)


class DeviceLearnedAlignScore(DeviceAlignScore):
    """Alignment and the learned model both on the device: the crops never leave it
    before scoring."""

    def __init__(self, device: torch.device, scorer: CrFiqaScorer, model: DeviceModel
                 ) -> None:
        super().__init__(device, scorer)
        self.manifest = scorer.manifest
        self.model = model
        model.warm((scorer.manifest.channels, CROP_SIZE, CROP_SIZE), MAX_BATCH)

    def score(self, crops: torch.Tensor, host: list[npt.NDArray[np.uint8]],
              landmarks: list[FloatArray]) -> Scores:
        m = self.manifest
        a, b = normalisation(m.mean, m.std)
        x = crops.flip(1) * a - b  # BGR -> RGB, as to_model_input
        planes = m.guidance.planes(landmarks)  # landmark map, size: small, made on the host
        if planes is not None:
            x = torch.cat([x, torch.from_numpy(planes).to(x.device, x.dtype)], dim=1)
        return split_outputs(m, [o.cpu().numpy() for o in self.model.infer_tensor(x)])

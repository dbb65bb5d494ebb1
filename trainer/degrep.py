"""A degradation representation learned beside the CR target (DSL-FIQA's dual-set idea).

``train --aux-weight W`` adds a small projection head on the student's embedding and an
InfoNCE loss over an extra batch of views drawn each step by :class:`DegradationPairs`:

- synthetic (LFW): the **same degradation** (kinds, severities, noise: one seed) on two
  **different faces** is a positive pair; pairs are chained so that a face also appears
  under **another degradation** in the next pair, where it is a negative;
- real (video tracks): a crop and its mirror image are a positive pair (the capture is
  the same), and the crop of the next frame of the same track is drawn too, as a
  negative: only the capture tells two neighbouring frames of one person apart.

So the embedding the CR head reads is pushed to describe the capture, not the person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F

from trainer.degrade import random_degradation
from trainer.distill import DistillSet


def info_nce(z: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE over 2M L2-normalised codes where rows 2k and 2k+1 are each other's
    positive and every other row is a negative."""
    n = z.shape[0]
    if n % 2:
        raise ValueError("info_nce needs an even number of views (pairs)")
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.arange(n, device=z.device) ^ 1  # 0<->1, 2<->3, ...
    return F.cross_entropy(sim, partner)


@dataclass
class AuxBatch:
    crops: npt.NDArray[np.uint8]       # 2M×112×112×3, pairs adjacent
    flip: npt.NDArray[np.bool_]        # 2M
    landmarks: npt.NDArray[np.float32]  # 2M×5×2 (source picture)
    size_factor: npt.NDArray[np.float32]
    how: list[str]  # each view's degradation ("real" for video crops)


class DegradationPairs:
    """Draws the auxiliary views from a training set (LFW rows: ``source`` ≥ 0; real
    rows, from ``with_real``: ``source`` < 0)."""

    def __init__(self, data: DistillSet, pairs: int, kinds: tuple[str, ...] | None = None
                 ) -> None:
        self.data = data
        self.pairs = pairs
        self.kinds = kinds
        src = np.asarray(data.source)
        self.lfw = np.flatnonzero((src >= 0) & ~np.asarray(data.degraded))
        real = np.flatnonzero(src < 0)
        # One row per real crop (with_real repeats them), in track order: with_real
        # stores the real set's row r as source -1 - r, so ascending sources run backwards.
        _, first = np.unique(src[real], return_index=True)
        self.real = real[first][::-1]
        if len(self.lfw) < 2:
            raise SystemExit("--aux-weight needs clean LFW photos in the training set")

    def draw(self, rng: np.random.Generator) -> AuxBatch:
        n_real = self.pairs // 2 if len(self.real) >= 2 else 0
        views: list[tuple[npt.NDArray[np.uint8], bool, int, float, str]] = []
        d = self.data
        face_a = -1
        for k in range(self.pairs - n_real):
            if k % 2 == 0 or face_a < 0:  # odd pairs reuse the face under a new degradation
                face_a = int(rng.choice(self.lfw))
            face_b = int(rng.choice(self.lfw))
            while d.identity[face_b] == d.identity[face_a]:
                face_b = int(rng.choice(self.lfw))
            seed = int(rng.integers(1 << 31))
            for face in (face_a, face_b):
                img, how = random_degradation(np.asarray(d.crops[face]), seed, kinds=self.kinds)
                views.append((img, bool(rng.random() < 0.5), face, how.size_factor(),
                              how.describe()))
        k = 0
        while k < n_real:
            at = int(rng.integers(len(self.real)))
            for row in (int(self.real[at]), int(self.real[min(at + 1, len(self.real) - 1)])):
                if k == n_real:
                    break
                img = np.asarray(d.crops[row])
                views += [(img, False, row, 1.0, "real"), (img, True, row, 1.0, "real")]
                k += 1
        marks = np.asarray(d.landmarks)
        return AuxBatch(np.stack([v[0] for v in views]), np.array([v[1] for v in views]),
                        marks[[v[2] for v in views]].astype(np.float32),
                        np.array([v[3] for v in views], np.float32), [v[4] for v in views])

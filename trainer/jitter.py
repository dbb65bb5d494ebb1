"""Alignment jitter: the crop a face would give if its landmarks were a little off.

A detector's five landmarks move by a few per cent of the eye distance between two
estimates of the same face (another scale, another window, the mirror image), most of
all on small faces. The aligner then warps by a slightly different similarity. A quality
model that has only seen perfectly aligned training crops reads that sub-pixel change as
a change in quality: on a 36-pixel face, 0.5 px of landmark noise moved the shipped
model's score from 12 to 25 (``scripts/alignment_noise.py``). Training on crops warped
as if the landmarks had been off by N(0, σ) px at template scale, against the target of
the well-aligned crop, teaches the score to ignore that noise.
"""

from __future__ import annotations

import cv2
import numpy as np

from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE, CROP_SIZE, umeyama
from stream_gate.types import ImageBGR


def jitter_alignment(img: ImageBGR, sigma_px: float, rng: np.random.Generator
                     ) -> ImageBGR:
    """``img`` (an aligned 112×112 crop) re-aligned from landmarks off by N(0, σ) px."""
    if sigma_px <= 0:
        return img
    noisy = ARCFACE_TEMPLATE + rng.normal(0.0, sigma_px, ARCFACE_TEMPLATE.shape)
    m = umeyama(noisy, ARCFACE_TEMPLATE)
    # align_face pads with black (past the frame's edge); here the pixels just past the
    # crop's edge exist in the frame, so repeating the edge is the closer picture.
    return cv2.warpAffine(img, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def jitter_batch(crops: ImageBGR, max_sigma_px: float, rng: np.random.Generator
                 ) -> ImageBGR:
    """Each crop of an N×112×112×3 batch jittered with its own σ ~ U(0, ``max_sigma_px``)."""
    if max_sigma_px <= 0:
        return crops
    return np.stack([jitter_alignment(c, float(rng.uniform(0.0, max_sigma_px)), rng)
                     for c in crops])

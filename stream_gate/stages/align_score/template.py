"""Align: warp each face onto the ArcFace 112×112 template by a similarity transform.

The transform is Umeyama's least-squares similarity (rotation, uniform scale,
translation) from the 5 detected landmarks to the template points; one
``cv2.warpAffine`` per face. Recognisers trained on ArcFace-aligned crops expect exactly
this geometry, so the gate's crops can be fed to them as they are.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.types import FloatArray, ImageBGR

CROP_SIZE = 112
ARCFACE_TEMPLATE: FloatArray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def umeyama(src: npt.NDArray[np.floating], dst: npt.NDArray[np.floating]) -> FloatArray:
    """Least-squares similarity transform mapping ``src`` (N×2) onto ``dst`` (N×2).

    Returns the 2×3 affine matrix ``[sR | t]`` (Umeyama 1991, no reflection).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]]).astype(np.float32)


def align_face(image: ImageBGR, landmarks: FloatArray) -> tuple[ImageBGR, FloatArray]:
    """The 112×112 aligned crop of one face and the matrix used (frame -> crop)."""
    m = umeyama(landmarks, ARCFACE_TEMPLATE)
    crop = cv2.warpAffine(
        image, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.ascontiguousarray(crop), m

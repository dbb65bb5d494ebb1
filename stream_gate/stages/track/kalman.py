"""Constant-velocity Kalman filter on boxes (centre x, centre y, aspect, height).

The same state and noise model as SORT/ByteTrack: noise scales with the box height, so
small far faces and large near faces are tracked with the same relative tolerance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vec = npt.NDArray[np.float64]

_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def box_to_xyah(box: npt.NDArray[np.floating]) -> Vec:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
    return np.array([x1 + w / 2, y1 + h / 2, w / h, h])


def xyah_to_box(m: Vec) -> Vec:
    cx, cy, a, h = m[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class KalmanBox:
    """Kalman state of one box; ``predict`` once per frame, ``update`` on a match."""

    def __init__(self, box: npt.NDArray[np.floating]) -> None:
        z = box_to_xyah(box)
        h = z[3]
        self.mean: Vec = np.concatenate([z, np.zeros(4)])
        std = np.array(
            [2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
             10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h]
        )
        self.cov: Vec = np.diag(std**2)

    def predict(self) -> None:
        h = self.mean[3]
        q = np.array(
            [_STD_POS * h, _STD_POS * h, 1e-2, _STD_POS * h,
             _STD_VEL * h, _STD_VEL * h, 1e-5, _STD_VEL * h]
        )
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T + np.diag(q**2)

    def update(self, box: npt.NDArray[np.floating]) -> None:
        z = box_to_xyah(box)
        h = self.mean[3]
        r = np.diag(np.array([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]) ** 2)
        s = _H @ self.cov @ _H.T + r
        k = np.linalg.solve(s, _H @ self.cov).T
        self.mean = self.mean + k @ (z - _H @ self.mean)
        self.cov = self.cov - k @ s @ k.T

    @property
    def box(self) -> Vec:
        return xyah_to_box(self.mean)

    def peek(self) -> Vec:
        """The box one ``predict`` ahead, without changing the state."""
        return xyah_to_box(_F @ self.mean)

    @property
    def step_motion(self) -> float:
        """Centre displacement per frame as a fraction of the box height."""
        return float(np.hypot(self.mean[4], self.mean[5]) / max(self.mean[3], 1e-3))

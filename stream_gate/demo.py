"""The demo's sample clip, made at run time (the demo and the bench use it).

The clip needs no network and no data files: two "people" cut from scikit-image's
bundled ``astronaut`` photo walk across a synthetic scene, growing as they approach,
blurred at some moments and sharp at others, so the gate has something to choose from.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import skimage.data

W, H = 640, 360


def _portrait() -> npt.NDArray[np.uint8]:
    img = skimage.data.astronaut()[:, :, ::-1]  # type: ignore[no-untyped-call]  # RGB -> BGR
    return np.ascontiguousarray(img[0:260, 110:340])


def _background(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    top, bottom = np.array([90, 110, 120], np.float32), np.array([40, 50, 55], np.float32)
    bg: npt.NDArray[np.float32] = np.broadcast_to(top * (1 - y) + bottom * y, (H, W, 3)).copy()
    for _ in range(12):  # a few "shelves" and "doors" so the scene is not flat
        x0, y0 = int(rng.integers(0, W - 60)), int(rng.integers(0, H - 60))
        color = rng.integers(30, 200, 3).astype(np.float32)
        bg[y0 : y0 + int(rng.integers(20, 80)), x0 : x0 + int(rng.integers(20, 120))] = color
    return bg.clip(0, 255).astype(np.uint8)


def _paste(frame: npt.NDArray[np.uint8], patch: npt.NDArray[np.uint8], cx: float, cy: float,
           scale: float, blur: float, gain: float) -> None:
    h, w = patch.shape[:2]
    nw, nh = max(8, int(w * scale)), max(8, int(h * scale))
    p = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32) * gain
    if blur > 0.3:
        p = cv2.GaussianBlur(p, (0, 0), blur)
    x0, y0 = int(cx - nw / 2), int(cy - nh / 2)
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(W, x0 + nw), min(H, y0 + nh)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    # Soft elliptical matte, so the "person" blends into the scene without hard edges.
    yy, xx = np.mgrid[0:nh, 0:nw].astype(np.float32)
    r = ((xx - nw / 2) / (nw / 2)) ** 2 + ((yy - nh / 2) / (nh / 2)) ** 2
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[:, :, None]
    sy, sx = slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0)
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    blended = alpha[sy, sx] * p[sy, sx] + (1 - alpha[sy, sx]) * region
    frame[fy0:fy1, fx0:fx1] = blended.clip(0, 255).astype(np.uint8)


def render_sample_clip(path: Path, seconds: float = 8.0, fps: int = 25, seed: int = 7) -> Path:
    """Write the demo clip (H.264 MP4, 640×360) to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    face = _portrait()
    other = np.ascontiguousarray(face[:, ::-1])
    hsv = cv2.cvtColor(other, cv2.COLOR_BGR2HSV)
    hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int32) + 25) % 180
    other = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    bg = _background(rng)
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(n):
            u = i / max(n - 1, 1)
            frame = bg.copy()
            # Person A walks left to right and comes closer; blurred, then sharp, then
            # motion-blurred again as they speed up.
            blur_a = 3.0 * abs(math.cos(math.pi * u)) ** 2
            _paste(frame, face, 120 + 380 * u, 190, 0.55 + 0.35 * u, blur_a, 1.0)
            # Person B crosses the other way in the middle of the clip, in worse light.
            if 0.2 <= u <= 0.85:
                v = (u - 0.2) / 0.65
                _paste(frame, other, 560 - 380 * v, 150, 0.5 + 0.1 * v, 1.5 * (1 - v), 0.75)
            noise = rng.normal(0, 3, frame.shape).astype(np.float32)
            img = (frame.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path

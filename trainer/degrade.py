"""Seeded degradations of aligned face crops: what cameras do to faces.

Each degradation takes a BGR uint8 image and a severity in [0, 1] (0 = untouched,
1 = the worst we train on) and returns a new image. :func:`random_degradation` draws a
kind (or a mixture of two) and a severity from a seeded generator, so a sample index
and a seed always give the same picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


def _clip(x: npt.NDArray[np.floating]) -> Image:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur(img: Image, s: float, rng: np.random.Generator) -> Image:
    sigma = 0.2 + 3.8 * s
    return cv2.GaussianBlur(img, (0, 0), sigma)


def motion_blur(img: Image, s: float, rng: np.random.Generator) -> Image:
    length = max(1, round(1 + 17 * s))
    angle = float(rng.uniform(0, 180))
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    k /= max(k.sum(), 1e-6)
    return cv2.filter2D(img, -1, k)


def sensor_noise(img: Image, s: float, rng: np.random.Generator) -> Image:
    sigma = 2 + 38 * s
    return _clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape))


def jpeg(img: Image, s: float, rng: np.random.Generator) -> Image:
    quality = round(90 - 85 * s)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    out: Image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def downscale_factor(s: float) -> float:
    """The linear size factor of a downscale of severity ``s``: 1.0 .. 0.12 (112 -> 13 px)."""
    return 1.0 - 0.88 * s


def downscale(img: Image, s: float, rng: np.random.Generator) -> Image:
    """Down- then up-scale: a face that was small in the frame (eye distance ~35·f px)."""
    h, w = img.shape[:2]
    f = downscale_factor(s)
    small = cv2.resize(img, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def low_light(img: Image, s: float, rng: np.random.Generator) -> Image:
    gain = 1.0 - 0.9 * s
    dark = img.astype(np.float32) * gain
    return _clip(dark + rng.normal(0, 1 + 6 * s, img.shape))


def over_exposure(img: Image, s: float, rng: np.random.Generator) -> Image:
    gain = 1.0 + 2.5 * s
    return _clip(img.astype(np.float32) * gain + 40 * s)


def occlusion(img: Image, s: float, rng: np.random.Generator) -> Image:
    """A flat or textured block over part of the face (hand, scarf, another head)."""
    out = img.copy()
    h, w = img.shape[:2]
    area = 0.05 + 0.45 * s
    bh = int(np.clip(np.sqrt(area) * h * rng.uniform(0.7, 1.4), 4, h))
    bw = int(np.clip(area * h * w / bh, 4, w))
    y = int(rng.integers(0, h - bh + 1))
    x = int(rng.integers(0, w - bw + 1))
    color = rng.integers(0, 256, 3)
    block = np.broadcast_to(color, (bh, bw, 3)).astype(np.float32)
    block = block + rng.normal(0, 12, block.shape)
    out[y : y + bh, x : x + bw] = _clip(block)
    return out


DEGRADATIONS: dict[str, Callable[[Image, float, np.random.Generator], Image]] = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "noise": sensor_noise,
    "jpeg": jpeg,
    "downscale": downscale,
    "low_light": low_light,
    "over_exposure": over_exposure,
    "occlusion": occlusion,
}


@dataclass(frozen=True, slots=True)
class Applied:
    """What was done to a sample: a list of (kind, severity)."""

    steps: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        return "+".join(f"{k}:{s:.2f}" for k, s in self.steps) or "clean"

    def size_factor(self) -> float:
        """How much smaller the face was made (``downscale``'s factor; 1: not at all)."""
        f = 1.0
        for kind, severity in self.steps:
            if kind == "downscale":
                f *= downscale_factor(severity)
        return f


def apply(img: Image, steps: tuple[tuple[str, float], ...], rng: np.random.Generator) -> Image:
    for kind, severity in steps:
        img = DEGRADATIONS[kind](img, severity, rng)
    return img


# Families for leave-one-degradation-out runs: train without one, test on it alone.
FAMILIES: dict[str, tuple[str, ...]] = {
    "blur": ("gaussian_blur", "motion_blur"),
    "noise": ("noise",),
    "jpeg": ("jpeg",),
    "downscale": ("downscale",),
    "low_light": ("low_light",),
    "over_exposure": ("over_exposure",),
    "occlusion": ("occlusion",),
}


def kinds_without(family: str | None) -> tuple[str, ...]:
    """Every degradation kind but those of ``family`` (None: every kind)."""
    if family is not None and family not in FAMILIES:
        raise SystemExit(f"unknown degradation family {family!r}; one of {sorted(FAMILIES)}")
    drop = FAMILIES.get(family or "", ())
    return tuple(k for k in DEGRADATIONS if k not in drop)


def random_degradation(
    img: Image, seed: int, mix_prob: float = 0.3, clean_prob: float = 0.0,
    max_severity: float = 1.0, kinds: tuple[str, ...] | None = None,
) -> tuple[Image, Applied]:
    """Degrade ``img`` reproducibly: same ``seed`` -> same kinds, severities and pixels.

    Severities are uniform in [0.05, ``max_severity``]; with ``mix_prob`` two kinds are
    stacked (one when ``kinds``, the kinds to draw from, has only one).
    """
    rng = np.random.default_rng(seed)
    if rng.random() < clean_prob:
        return img.copy(), Applied(())
    pool = list(kinds) if kinds is not None else list(DEGRADATIONS)
    n = min(2 if rng.random() < mix_prob else 1, len(pool))
    chosen = rng.choice(len(pool), size=n, replace=False)
    steps = tuple((pool[int(i)], float(rng.uniform(0.05, max_severity))) for i in chosen)
    return apply(img, steps, rng), Applied(steps)

"""Align and score: each face warped onto the ArcFace 112×112 template, then scored.

template.py is the geometry (Umeyama similarity to the 5-point ArcFace template);
host.py aligns with OpenCV, torch.py with one ``grid_sample`` on the device. The scorers:
learned.py (the CR-FIQA model and its calibration manifest, the default) and
heuristic.py (the transparent baseline). Alignment and scoring are one stage because on
a GPU the crops should never leave the device between them.

May import: runtime, geometry, config, errors, types (no other stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from stream_gate.config import ScoreConfig
from stream_gate.runtime import Backend, load_device_model
from stream_gate.stages.align_score.heuristic import HeuristicScorer
from stream_gate.stages.align_score.host import HostAlignScore
from stream_gate.stages.align_score.learned import CrFiqaScorer, load_quality_model
from stream_gate.stages.align_score.scored import Face, QualityScorer, ScoredCrops
from stream_gate.types import FrameBatch

__all__ = ["AlignScore", "CrFiqaScorer", "Face", "HeuristicScorer", "QualityScorer",
           "ScoredCrops", "build_align_score", "build_scorer"]


class AlignScore(Protocol):
    """Faces of a batch -> their aligned crops and scores."""

    @property
    def name(self) -> str:
        """The quality model's id, published with every crop."""
        ...

    def run(self, batch: FrameBatch, faces: Sequence[Face]) -> ScoredCrops: ...


def build_scorer(cfg: ScoreConfig, backend: Backend) -> QualityScorer:
    """The host scorer ``score.model`` names: ``heuristic``, a shipped model or a
    manifest path (its model on ``backend``'s engine, host arrays in and out)."""
    if cfg.model == "heuristic":
        return HeuristicScorer()
    return CrFiqaScorer.load(cfg.model, backend.cfg, cfg.threads)


def build_align_score(cfg: ScoreConfig, backend: Backend) -> AlignScore:
    """Alignment and the scorer ``score.model`` names, on ``backend``."""
    if backend.device is None:
        return HostAlignScore(build_scorer(cfg, backend))
    from stream_gate.stages.align_score.torch import DeviceAlignScore, DeviceLearnedAlignScore

    if cfg.model == "heuristic":
        return DeviceAlignScore(backend.device, HeuristicScorer())
    manifest, blob = load_quality_model(cfg.model)
    model = load_device_model(blob, manifest.name, backend, threads=cfg.threads)
    return DeviceLearnedAlignScore(backend.device, CrFiqaScorer(manifest, model), model)

"""The shipped CR-FIQA model: default scorer, manifest integrity, falling scores."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_gate.config import RuntimeConfig, ScoreConfig, load_settings
from stream_gate.errors import ConfigError, ModelError
from stream_gate.runtime import Backend
from stream_gate.stages.align_score import build_scorer
from stream_gate.stages.align_score.learned import Calibration, CrFiqaScorer, manifest_path

from .conftest import run_cli


def test_v2_is_the_default_and_v1_and_heuristic_stay_selectable() -> None:
    assert load_settings(None).score.model == "cr-fiqa-s-v2"
    host = Backend(RuntimeConfig())
    assert build_scorer(ScoreConfig(), host).name == "cr-fiqa-s-v2@2"
    assert build_scorer(ScoreConfig(model="cr-fiqa-s"), host).name == "cr-fiqa-s@1"
    assert build_scorer(ScoreConfig(model="heuristic"), host).name == "heuristic"
    with pytest.raises(ConfigError, match=r"score\.model"):
        load_settings(None, {"score": {"model": "best-one"}})


@pytest.mark.parametrize("name", ["cr-fiqa-s-v2", "cr-fiqa-s"])
def test_manifest_matches_the_shipped_file_and_budget(name: str) -> None:
    meta = json.loads(manifest_path(name).read_text())
    onnx_file = manifest_path(name).parent / meta["file"]
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == meta["sha256"]
    assert onnx_file.stat().st_size < 5_000_000
    assert meta["parameters"] <= 1_500_000
    assert meta["multiply_adds"] <= 100_000_000
    assert meta["input"]["normalisation"]["mean"] == 0.5
    assert meta["export"]["max_abs_diff_vs_torch"] < 1e-4
    q = meta["calibration"]["quality"]
    assert all(b >= a for a, b in pairwise(q)) and q[0] >= 0 and q[-1] <= 100


def test_v2_scores_as_v1_and_adds_a_signature_that_tells_people_apart(
        lfw_image: Callable[..., Path]) -> None:
    """v2's quality output is v1's, to the bit; its signature puts two photos of one
    person closer together than photos of two people (what the consensus relies on)."""
    from trainer.data import align_photos

    people = ("George_W_Bush", "Colin_Powell")
    crops = align_photos([lfw_image(p, i) for p in people for i in (1, 2, 3)])
    marks = [np.zeros((5, 2), np.float32)] * len(crops)
    v1 = CrFiqaScorer.load("cr-fiqa-s").score(list(crops), marks)
    v2 = CrFiqaScorer.load("cr-fiqa-s-v2").score(list(crops), marks)
    assert np.array_equal(v1.quality, v2.quality) and v1.signature is None
    assert v2.signature is not None and v2.signature.shape == (6, 128)
    e = v2.signature / np.linalg.norm(v2.signature, axis=1, keepdims=True)
    sim = e @ e.T
    same = [sim[i, j] for p in (0, 3) for i in range(p, p + 3) for j in range(i + 1, p + 3)]
    other = sim[:3, 3:].ravel()
    assert min(same) > max(other)


def test_a_manifest_naming_an_output_the_model_lacks_is_refused(tmp_path: Path) -> None:
    """A v2 manifest pointed at the v1 file (one output) fails at start-up, by name."""
    meta = json.loads(manifest_path("cr-fiqa-s-v2").read_text())
    v1 = json.loads(manifest_path("cr-fiqa-s").read_text())
    (tmp_path / "m.onnx").write_bytes((manifest_path("cr-fiqa-s").parent / v1["file"])
                                      .read_bytes())
    meta.update(file="m.onnx", sha256=v1["sha256"])
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="signature"):
        CrFiqaScorer.load(str(tmp_path / "m.json"))


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    meta = json.loads(manifest_path("cr-fiqa-s").read_text())
    (tmp_path / meta["file"]).write_bytes(b"not the model")
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="does not match its manifest"):
        CrFiqaScorer.load(str(tmp_path / "m.json"))


def test_calibration_rejects_decreasing_knots() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration((0.1, 0.2, 0.3), (10.0, 5.0, 20.0))
    cal = Calibration((0.1, 0.5), (0.0, 100.0))
    assert cal(np.array([0.0, 0.3, 1.0])).tolist() == [0.0, 50.0, 100.0]


def test_scores_fall_as_degradation_grows(lfw_image: Callable[..., Path],
                                          tmp_path: Path) -> None:
    """One face, from sharp to heavily blurred and compressed, scored by the CLI."""
    photo = cv2.imread(str(lfw_image("Colin_Powell", 1)))
    series = tmp_path / "series"
    series.mkdir()
    for i, s in enumerate(np.linspace(0.0, 1.0, 6)):
        img = photo if s == 0 else cv2.GaussianBlur(photo, (0, 0), 0.3 + 3.0 * s)
        quality = int(95 - 85 * s)
        cv2.imwrite(str(series / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    res = run_cli("score", "--json", str(series))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(ln) for ln in res.stdout.splitlines()]
    q = [max(f["quality"] for f in r["faces"]) for r in rows]
    ranks = np.argsort(np.argsort(q))
    spearman = np.corrcoef(ranks, np.arange(len(q)))[0, 1]
    assert spearman <= -0.9, q
    assert q[0] - q[-1] >= 30, q

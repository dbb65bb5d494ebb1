"""A library upgrade (OpenCV, onnxruntime, numpy, ...) must not move our faces or scores
unnoticed: the figures of tests/drift.py, measured with requirements.txt, hold."""

from __future__ import annotations

import json

import pytest

from .drift import DATA, REFERENCE, compare, measure


def test_faces_and_scores_are_those_measured_with_the_lock() -> None:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent: tests that need ../shared/data skip without it")
    ref = json.loads(REFERENCE.read_text())
    got = measure()
    problems = compare(ref, got)
    assert not problems, (f"measured with {ref['versions']}, now {got['versions']}: "
                          + "; ".join(problems))


def test_the_comparison_sees_a_moved_face() -> None:
    """The check itself: a face shifted by a few pixels, a lost face, a changed score."""
    face = {"box": [10.0, 10.0, 60.0, 70.0], "landmarks": [[20.0, 30.0]] * 5, "score": 0.9,
            "quality": 80.0}
    moved = {**face, "box": [13.0, 10.0, 63.0, 70.0]}
    scored = {**face, "quality": 75.0}
    assert compare({"k": [face]}, {"k": [face]}) == []
    assert "moved" in compare({"k": [face]}, {"k": [moved]})[0]
    assert "no face" in compare({"k": [face]}, {"k": []})[0]
    assert "quality" in compare({"k": [face]}, {"k": [scored]})[0]
    # int8 figures are compared only where int8 was measured (CPUs with VNNI: without
    # it int8 saturates and the product runs fp32); fp32 figures always.
    assert compare({"k/int8": [face]}, {"int8_measured": False}) == []
    assert "no face" in compare({"k/int8": [face]}, {"int8_measured": True})[0]
    assert "no face" in compare({"k/fp32": [face]}, {"int8_measured": False})[0]

"""The CPU runtime's PRelu rewrite: same scores, no PRelu left where it is exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from stream_gate.config import DetectConfig
from stream_gate.runtime.prelu import split_prelu
from stream_gate.stages.align_score.learned import CrFiqaScorer, to_model_input
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.detect import build_host_detector


def _plain_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("model", "prelus", "split"), [
    ("cr-fiqa-s", 17, 17),
    ("cr-fiqa-s-v2", 34, 34),  # two of the student's layers have channels with a >= 1
])
def test_quality_model_scores_real_faces_as_the_unrewritten_graph(
        lfw_image: Callable[..., Path], model: str, prelus: int, split: int) -> None:
    """The served scorer (rewritten graph) gives the original graph's outputs on real
    faces: the raw CR, and v2's signature."""
    detector = build_host_detector(DetectConfig(max_side=640, min_face_px=0))
    crops = []
    for person, n in (("Colin_Powell", 1), ("Aaron_Eckhart", 1), ("George_W_Bush", 2)):
        photo = cv2.imread(str(lfw_image(person, n)))
        found = detector.detect_images([photo])[0]
        crops.append(align_face(photo, found.landmarks[int(np.argmax(found.scores))])[0])
    crops.append(cv2.GaussianBlur(crops[0], (0, 0), 3.0))  # a poor one too
    scorer = CrFiqaScorer.load(model)
    served = scorer.score(crops, [np.zeros((5, 2), np.float32)] * len(crops))

    original = onnx.load(str(scorer.manifest.file))
    assert sum(n.op_type == "PRelu" for n in original.graph.node) == prelus
    x = to_model_input(crops, scorer.manifest.mean, scorer.manifest.std)
    outputs = _plain_session(original).run(None, {"input": x})
    reference = outputs[0].reshape(-1)
    np.testing.assert_allclose(served.raw, reference, atol=1e-5)
    assert reference.max() - reference.min() > 0.05  # the faces differ: not a constant
    if served.signature is not None:
        np.testing.assert_allclose(served.signature, outputs[1], atol=1e-4)

    rewritten, done = split_prelu(original)
    assert done == split
    assert sum(n.op_type == "PRelu" for n in rewritten.graph.node) == prelus - split
    onnx.checker.check_model(rewritten)
    assert getattr(scorer.model, "prelu_split", None) == split  # the served graph


def _conv_prelu(slope: np.ndarray, extra_reader: bool = False, reader: str = ""
                ) -> onnx.ModelProto:
    """x -> Conv(3x3, 4 channels) -> PRelu(slope) [-> also a second output of the conv]
    [-> a Conv reading the PRelu: ``conv`` (4 -> 3 channels), ``depthwise`` (groups of 1),
    ``grouped`` (2 groups of 2), ``conv+output`` (the PRelu is also a graph output)]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b")
    a = numpy_helper.from_array(slope.astype(np.float32), "a")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["y", "a"], ["z"])]
    inits = [w, b, a]
    outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    if reader:
        shape, group = {"conv": ((3, 4, 1, 1), 1), "conv+output": ((3, 4, 1, 1), 1),
                        "depthwise": ((4, 1, 3, 3), 4), "grouped": ((4, 2, 3, 3), 2)}[reader]
        inits.append(numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), "w2"))
        nodes.append(helper.make_node("Conv", ["z", "w2"], ["o"], group=group,
                                      pads=[shape[2] // 2] * 4))
        outputs = [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)]
        if reader == "conv+output":
            outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 8, 8])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_rewrite_applies_only_where_it_is_exact() -> None:
    x = np.random.default_rng(1).normal(size=(1, 2, 8, 8)).astype(np.float32)
    some_above_1 = np.array([0.2, 1.5, 0.2, 1.0]).reshape(4, 1, 1)
    cases = {
        "per-channel slopes in [0, 1)": (np.array([0.0, 0.1, 0.5, 0.9]).reshape(4, 1, 1), False,
                                         "", 1),
        "one shared slope": (np.array([0.25]), False, "", 1),
        "a negative slope (1 - a > 1: still exact)": (np.array([-0.1]), False, "", 1),
        "per-channel slopes, some negative": (np.array([-0.7, 0.1, 0.5, 0.9]).reshape(4, 1, 1),
                                              False, "", 1),
        # Slopes >= 1: those channels computed negated, the sign folded into the reader.
        "slopes >= 1 read by a conv": (some_above_1, False, "conv", 1),
        "slopes >= 1 read by a depthwise conv": (some_above_1, False, "depthwise", 1),
        "slopes >= 1 read by a grouped conv": (some_above_1, False, "grouped", 1),
        "one shared slope of 1.5, read by a conv": (np.array([1.5]), False, "conv", 1),
        "slopes >= 1 that are a graph output (no sign to fold into)": (some_above_1, False, "", 0),
        "slopes >= 1 read by a conv and output too": (some_above_1, False, "conv+output", 0),
        "slopes along the width, not the channels": (np.full(8, 0.2), False, "", 0),
        "the conv output is read elsewhere too": (np.array([0.25]), True, "", 0),
    }
    for what, (slope, extra, reader, expect) in cases.items():
        model = _conv_prelu(slope, extra, reader)
        rewritten, done = split_prelu(model)
        assert done == expect, what
        if done:
            assert not any(n.op_type == "PRelu" for n in rewritten.graph.node), what
        want = _plain_session(model).run(None, {"x": x})
        got = _plain_session(rewritten).run(None, {"x": x})
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=what)

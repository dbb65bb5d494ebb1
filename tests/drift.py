"""What the libraries do to our pixels and scores, measured on ../shared/data.

The detector's faces (both precisions) on LFW photos and 1080p crowd frames, the quality
model's scores of the aligned crops, and a photo blurred and JPEG-compressed step by step
(OpenCV's blur, JPEG codec, resize and warp all take part). ``tests/data/
library_drift.json`` holds these figures as measured with requirements.txt;
test_library_drift.py fails when an upgrade moves them beyond the tolerances below.

The int8 detector's figures hold only on CPUs with VNNI: without it, onnxruntime adds
int8 products in 16-bit registers that saturate (boxes move by up to a third, a face is
lost), which is why ``detect.precision = "auto"`` runs fp32 there. On such a CPU the
int8 figures are neither measured nor compared; the fp32 ones are, everywhere.

    .venv/bin/python -m tests.drift write      # re-measure after `make lock`, on purpose
    .venv/bin/python -m tests.drift compare    # what moved, against the stored figures
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from stream_gate.config import DetectConfig
from stream_gate.geometry import iou_matrix
from stream_gate.runtime.ort import cpu_has_vnni
from stream_gate.stages.align_score import CrFiqaScorer
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.detect import build_host_detector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REFERENCE = ROOT / "tests" / "data" / "library_drift.json"
PHOTOS = ("Aaron_Eckhart", "Ariel_Sharon", "Colin_Powell", "George_W_Bush", "Hans_Blix",
          "Jennifer_Aniston", "Serena_Williams")
CROWD_FRAMES = (0, 50, 100)
# Tolerances: a face moved by more than this, or a score by more than this, is drift.
MIN_IOU, LANDMARK_PX, DET_SCORE, QUALITY = 0.97, 0.75, 0.03, 1.5


def _photo(person: str) -> np.ndarray:
    return cv2.imread(str(DATA / "lfw" / "images" / person / f"{person}_0001.jpg"))


def _crowd() -> list[np.ndarray]:
    with av.open(str(DATA / "media" / "crowd_walking_1080p.mp4")) as c:
        return [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0))
                if i in CROWD_FRAMES]


def _faces(det: Any, image: np.ndarray, scorer: CrFiqaScorer | None) -> list[dict[str, Any]]:
    found = det.detect_images([image])[0]
    crops = [align_face(image, lm)[0] for lm in found.landmarks]
    quality = scorer.score(crops, list(found.landmarks)).quality if scorer and crops else []
    return [{"box": found.boxes[i].round(2).tolist(),
             "landmarks": found.landmarks[i].round(2).tolist(),
             "score": round(float(found.scores[i]), 4),
             **({"quality": round(float(quality[i]), 2)} if scorer else {})}
            for i in range(len(found))]


def measure() -> dict[str, Any]:
    """Every figure, keyed by input and detector."""
    scorer = CrFiqaScorer.load()
    vnni = cpu_has_vnni()
    detectors = {p: build_host_detector(DetectConfig(precision=p))
                 for p in (("int8", "fp32") if vnni else ("fp32",))}
    out: dict[str, Any] = {"versions": {"opencv": cv2.__version__,
                                        "onnxruntime": __import__("onnxruntime").__version__,
                                        "numpy": np.__version__}, "int8_measured": vnni}
    for person in PHOTOS:
        for prec, det in detectors.items():
            out[f"lfw/{person}/{prec}"] = _faces(det, _photo(person), scorer)
    for i, frame in zip(CROWD_FRAMES, _crowd(), strict=True):
        for prec, det in detectors.items():
            out[f"crowd/{i}/{prec}"] = _faces(det, frame, None)
    photo = _photo("Colin_Powell")
    for k, s in enumerate(np.linspace(0.0, 1.0, 6)):
        img = photo if s == 0 else cv2.GaussianBlur(photo, (0, 0), 0.3 + 3.0 * s)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(95 - 85 * s)])
        assert ok
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        for prec, det in detectors.items():
            out[f"degraded/{k}/{prec}"] = _faces(det, img, scorer)
    return out


def compare(ref: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """What moved beyond the tolerances: faces lost or new, boxes, landmarks, scores."""
    problems: list[str] = []
    for key, want in ref.items():
        if key in ("versions", "int8_measured"):
            continue
        if key.endswith("/int8") and not got.get("int8_measured", True):
            continue  # a CPU without VNNI: int8 saturates there, and is not used
        have = got.get(key, [])
        sure = [f for f in want if f["score"] > 0.5]
        if not have:
            if sure:
                problems.append(f"{key}: no face found (was {len(want)})")
            continue
        boxes = np.array([f["box"] for f in have], np.float32)
        for f in sure:
            iou = iou_matrix(np.array([f["box"]], np.float32), boxes)[0]
            j = int(iou.argmax())
            if iou[j] < MIN_IOU:
                problems.append(f"{key}: face at {f['box']} moved (IoU {iou[j]:.3f})")
                continue
            g = have[j]
            lm = float(np.abs(np.array(f["landmarks"]) - np.array(g["landmarks"])).max())
            if lm > LANDMARK_PX:
                problems.append(f"{key}: landmarks moved {lm:.2f} px")
            if abs(f["score"] - g["score"]) > DET_SCORE:
                problems.append(f"{key}: detector score {f['score']} -> {g['score']}")
            if "quality" in f and abs(f["quality"] - g["quality"]) > QUALITY:
                problems.append(f"{key}: quality {f['quality']} -> {g['quality']}")
    return problems


if __name__ == "__main__":
    figures = measure()
    if sys.argv[1:] == ["write"]:
        if not figures["int8_measured"]:  # keep the int8 figures a VNNI CPU measured
            old = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
            figures = {**{k: v for k, v in old.items() if k.endswith("/int8")}, **figures,
                       "int8_measured": any(k.endswith("/int8") for k in old)}
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(figures, indent=0) + "\n")
        print(f"wrote {REFERENCE} ({figures['versions']})")
    else:
        ref = json.loads(REFERENCE.read_text())
        print(f"reference {ref['versions']}, now {figures['versions']}")
        print("\n".join(compare(ref, figures)) or "no drift beyond the tolerances")

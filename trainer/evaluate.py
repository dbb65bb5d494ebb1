"""Evaluation by the field's protocol: EDC curves and pAUC on held-out identities.

Items are the validation identities' photos (clean) plus ``k`` seeded degraded copies
each (seeds disjoint from training). Genuine pairs join items of the same identity made
from different photos; impostor pairs join items of different identities. For each
comparator recogniser, the threshold is fixed on all impostor pairs at FMR 1e-2 and
1e-3; then genuine pairs are sorted by pair quality (the lower of the two items'),
the lowest fraction is discarded and the FNMR of the rest is the EDC. pAUC integrates
the EDC over 0–30 % discarded, normalised by 0.3 × FNMR at 0 % (random order ≈ 1,
lower is better).

Methods compared on the same pairs: the learned model, the ``heuristic`` scorer,
Laplacian blur alone, random order, and the teacher's own certainty ratio (the ceiling
a distilled model approaches).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.stages.align_score.heuristic import HeuristicScorer, sharpness
from stream_gate.stages.align_score.learned import CrFiqaScorer
from trainer.data import Sample, load_prepared
from trainer.degrade import random_degradation
from trainer.distill import EVAL_SEED_OFFSET, loo_certainty_ratio
from trainer.recognisers import DlibRecogniser, OnnxRecogniser

FMRS = (1e-2, 1e-3)
DISCARD = np.round(np.arange(0.0, 0.951, 0.01), 4)


def edc(genuine: npt.NDArray[np.floating], pair_q: npt.NDArray[np.floating], thr: float
        ) -> npt.NDArray[np.float64]:
    """FNMR of the genuine pairs kept after discarding each fraction in ``DISCARD``."""
    order = np.argsort(pair_q, kind="stable")
    fails = (genuine[order] < thr).astype(np.float64)
    n = len(fails)
    tail = np.cumsum(fails[::-1])[::-1]  # failures among pairs order[i:]
    out = []
    for r in DISCARD:
        start = min(int(np.floor(r * n)), n - 1)
        out.append(tail[start] / (n - start))
    return np.array(out)


def pauc(curve: npt.NDArray[np.float64], upto: float = 0.3) -> float:
    """Area under the EDC over [0, upto] discarded, normalised by upto × FNMR(0)."""
    m = upto + 1e-9 >= DISCARD
    area = float(np.sum((curve[m][1:] + curve[m][:-1]) / 2 * np.diff(DISCARD[m])))
    return area / (upto * curve[0]) if curve[0] > 0 else float("nan")


def _items(crops: npt.NDArray[np.uint8], samples: list[Sample], max_per_id: int, k: int,
           max_severity: float) -> tuple[npt.NDArray[np.uint8], list[Sample], npt.NDArray[np.intp]]:
    by_id: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.split == "val":
            by_id[s.identity].append(s)
    photos = [s for ident in sorted(by_id) if len(by_id[ident]) >= 2
              for s in by_id[ident][:max_per_id]]
    out = np.empty((len(photos) * (k + 1), 112, 112, 3), np.uint8)
    owners: list[Sample] = []
    for i, s in enumerate(photos):
        img = np.asarray(crops[s.index])
        out[i * (k + 1)] = img
        for j in range(k):
            out[i * (k + 1) + 1 + j] = random_degradation(
                img, EVAL_SEED_OFFSET + s.index * 97 + j, max_severity=max_severity)[0]
        owners += [s] * (k + 1)
    source = np.array([s.index for s in owners])
    return out, owners, source


def evaluate(prepared: Path, model: str, teacher_path: Path, comparators: list[str],
             max_per_id: int, k: int, out: Path, max_severity: float = 0.6
             ) -> dict[str, object]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    crops, samples = load_prepared(prepared)
    items, owners, source = _items(crops, samples, max_per_id, k, max_severity)
    names = sorted({s.identity for s in owners})
    label = {n: i for i, n in enumerate(names)}
    ident = np.array([label[s.identity] for s in owners])
    print(f"{len(items)} items from {len(set(source))} photos of {len(names)} identities")

    teacher = OnnxRecogniser(teacher_path)
    embs = {"teacher": teacher.embed(items, progress="teacher")}
    if "dlib" in comparators:
        embs["dlib"] = DlibRecogniser().embed(items, progress="dlib")

    # Quality of every item by every method.
    learned = CrFiqaScorer.load(model)
    marks = [np.array(s.landmarks, np.float32) for s in owners]
    quality: dict[str, npt.NDArray[np.floating]] = {
        learned.name: np.concatenate([
            learned.score(list(items[s : s + 256]), marks[s : s + 256]).quality
            for s in range(0, len(items), 256)]),
        "heuristic": HeuristicScorer().score(list(items), marks).quality,
        "blur (Laplacian)": np.array(
            [sharpness(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)) for im in items]),
        "random": np.random.default_rng(0).random(len(items)),
    }
    # Teacher's own CR: own centre from the identity's other clean photos.
    clean = np.arange(0, len(items), k + 1)
    quality["teacher CR (ceiling)"] = loo_certainty_ratio(
        embs["teacher"], ident, source, embs["teacher"][clean], ident[clean], source[clean])[0]

    iu = np.triu_indices(len(items), 1)
    same_id = ident[iu[0]] == ident[iu[1]]
    genuine_mask = same_id & (source[iu[0]] != source[iu[1]])
    impostor_mask = ~same_id
    results: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[tuple[str, float], dict[str, npt.NDArray[np.float64]]] = {}
    for comp, emb in embs.items():
        sims = (emb @ emb.T)[iu]
        gen, imp = sims[genuine_mask], sims[impostor_mask]
        for fmr in FMRS:
            thr = float(np.quantile(imp, 1.0 - fmr))
            key = f"{comp} @ FMR {fmr:g}"
            results[key] = {}
            curves[(comp, fmr)] = {}
            for method, q in quality.items():
                pq = np.minimum(q[iu[0]], q[iu[1]])[genuine_mask]
                curve = edc(gen, pq, thr)
                curves[(comp, fmr)][method] = curve
                results[key][method] = round(pauc(curve), 4)
            results[key]["FNMR at 0%"] = round(float(curves[(comp, fmr)]["random"][0]), 4)
    n_gen, n_imp = int(genuine_mask.sum()), int(impostor_mask.sum())

    fig, axes = plt.subplots(len(embs), len(FMRS), figsize=(6 * len(FMRS), 4.5 * len(embs)),
                             squeeze=False)
    for r, comp in enumerate(embs):
        for c, fmr in enumerate(FMRS):
            ax = axes[r][c]
            for method, curve in curves[(comp, fmr)].items():
                ax.plot(DISCARD * 100, curve, label=f"{method} (pAUC {pauc(curve):.3f})")
            ax.set_title(f"EDC, comparator {comp}, FMR {fmr:g}")
            ax.set_xlabel("discarded pairs (%)")
            ax.set_ylabel("FNMR")
            ax.axvline(30, color="grey", lw=0.5, ls="--")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "edc.png", dpi=110)

    methods = list(quality)
    lines = ["| comparator @ FMR | " + " | ".join(methods) + " | FNMR at 0% |",
             "|---" * (len(methods) + 2) + "|"]
    for key, row in results.items():
        lines.append(f"| {key} | " + " | ".join(f"{row[m]:.3f}" for m in methods)
                     + f" | {row['FNMR at 0%']:.3f} |")
    table = "\n".join(lines)
    summary = {"items": len(items), "identities": len(names), "genuine_pairs": n_gen,
               "max_severity": max_severity, "degraded_per_photo": k,
               "impostor_pairs": n_imp, "pauc_0_30": results, "model": learned.name}
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "table.md").write_text(table + "\n")
    print(f"genuine pairs {n_gen}, impostor pairs {n_imp}")
    print("pAUC over 0–30 % discarded (lower is better; random ≈ 1):")
    print(table)
    print(f"EDC plot: {out / 'edc.png'}")
    return summary

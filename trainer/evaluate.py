"""Evaluation by the field's protocol: EDC curves and pAUC on held-out identities.

Items are the validation identities' photos and ``k`` seeded degraded copies of each,
drawn by a :class:`Protocol` (seeds disjoint from training): ``standard`` (the v1 card's:
the clean photo + copies of severity ≤ 0.6), ``hard`` (camera degradations over the
whole severity range, 30 % of the copies mixed and 30 % left clean, on the ``test`` half
of the validation identities that no model is chosen or calibrated on), and either restricted to one
degradation family (``--only``, the test side of a leave-one-degradation-out run).

Genuine pairs join items of the same identity made from different photos; impostor
pairs join items of different identities. For each comparator recogniser, the threshold
is fixed on all impostor pairs at FMR 1e-2 and 1e-3; then genuine pairs are sorted by
pair quality (the lower of the two items'), the lowest fraction is discarded and the
FNMR of the rest is the EDC. pAUC integrates the EDC over 0–30 % discarded, normalised
by 0.3 × FNMR at 0 % (random order ≈ 1, lower is better).

Methods compared on the same pairs: the learned model(s), the ``heuristic`` scorer,
Laplacian blur alone, random order, and the teacher's own certainty ratio (the ceiling
a distilled model approaches).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.stages.align_score.heuristic import HeuristicScorer, sharpness
from stream_gate.stages.align_score.learned import CrFiqaScorer
from stream_gate.types import Scores
from trainer.data import Sample, load_prepared
from trainer.degrade import FAMILIES, random_degradation
from trainer.distill import EVAL_SEED_OFFSET, HARD_SEED_OFFSET, holdout_of, loo_certainty_ratio
from trainer.recognisers import DlibRecogniser, OnnxRecogniser, cached_embed

FMRS = (1e-2, 1e-3)
ORACLE = "oracle (pairs by their own score)"
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


def model_scores(model: str, crops: npt.NDArray[np.uint8],
                 landmarks: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32]
                 ) -> tuple[str, Scores]:
    """(name@version, the Scores of every crop: quality, raw, signature if the model has
    one) of a shipped model name or a manifest path, in batches of 256."""
    scorer = CrFiqaScorer.load(model)
    parts = [scorer.score(list(crops[s : s + 256]), list(landmarks[s : s + 256]))
             for s in range(0, len(crops), 256)]
    if not parts:
        parts = [scorer.score([], [])]
    sigs = [p.signature for p in parts if p.signature is not None]
    return scorer.name, Scores(
        raw=np.concatenate([p.raw for p in parts]),
        quality=np.concatenate([p.quality for p in parts]),
        signature=np.concatenate(sigs) if len(sigs) == len(parts) else None)


def model_quality(model: str, crops: npt.NDArray[np.uint8],
                  landmarks: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32]
                  ) -> tuple[str, npt.NDArray[np.float32]]:
    """(name@version, calibrated quality of every crop) of a shipped model name or a
    manifest path (both benchmarks)."""
    name, s = model_scores(model, crops, landmarks)
    return name, s.quality


def laplacian(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """Laplacian sharpness of every crop's face region (the blur baseline)."""
    return np.array([sharpness(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)) for c in crops],
                    np.float64)


@dataclass(frozen=True, slots=True)
class Protocol:
    """How the evaluation items are drawn from the prepared photos.

    ``clean_photo``: each photo's clean crop is an item besides its ``k`` degraded copies
    (the v1 card's set); ``clean_prob``: the chance a copy stays clean instead.
    ``half``: which validation identities (``all``, or the ``val`` / ``test`` half of
    :func:`holdout_of`: models are chosen on ``val``, reported on ``test``).
    ``camera_landmarks``: a downscaled copy's landmarks shrink with it, as a camera that
    saw the face that small would report them (what the heuristic's size term, the
    landmark map's widths and the size plane see); otherwise every copy keeps its photo's.
    """

    name: str
    max_severity: float
    mix_prob: float
    clean_prob: float
    clean_photo: bool
    seed_offset: int
    half: str
    kinds: tuple[str, ...] | None = None
    camera_landmarks: bool = False


CAMERA_KINDS = ("gaussian_blur", "motion_blur", "noise", "jpeg", "downscale", "low_light")
PROTOCOLS = {
    # The v1 model card's benchmark: severity ≤ 0.6, drawn like the training data.
    "standard": Protocol("standard", 0.6, 0.3, 0.0, True, EVAL_SEED_OFFSET, "all"),
    # What cameras do (blur, motion blur, noise, JPEG, downscale, low light) over the
    # whole severity range, 30 % of the copies mixed, 30 % clean, its own seeds, on
    # identities no model was selected or calibrated on.
    "hard": Protocol("hard", 1.0, 0.3, 0.3, False, HARD_SEED_OFFSET, "test",
                     CAMERA_KINDS, camera_landmarks=True),
}


def protocol(name: str, only: str | None = None, half: str | None = None) -> Protocol:
    """A named protocol, restricted to one degradation family (``only``) and/or
    another half of the validation identities."""
    p = PROTOCOLS[name]
    if only is not None:
        if only not in FAMILIES:
            raise SystemExit(f"--only: unknown family {only!r}; one of {sorted(FAMILIES)}")
        p = replace(p, name=f"{p.name}, {only} only", kinds=FAMILIES[only])
    return replace(p, half=half) if half is not None else p


def _items(crops: npt.NDArray[np.uint8], samples: list[Sample], max_per_id: int, k: int,
           proto: Protocol) -> tuple[npt.NDArray[np.uint8], list[Sample], npt.NDArray[np.intp],
                                     npt.NDArray[np.float32]]:
    """The evaluation items: crops, their photos' samples and indices, their landmarks."""
    by_id: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.split == "val" and proto.half in ("all", holdout_of(s.identity)):
            by_id[s.identity].append(s)
    photos = [s for ident in sorted(by_id) if len(by_id[ident]) >= 2
              for s in by_id[ident][:max_per_id]]
    per = k + int(proto.clean_photo)
    out = np.empty((len(photos) * per, 112, 112, 3), np.uint8)
    marks = np.empty((len(photos) * per, 5, 2), np.float32)
    owners: list[Sample] = []
    for i, s in enumerate(photos):
        img = np.asarray(crops[s.index])
        lm = np.asarray(s.landmarks, np.float32)
        marks[i * per : (i + 1) * per] = lm
        if proto.clean_photo:
            out[i * per] = img
        for j in range(k):
            row = i * per + int(proto.clean_photo) + j
            out[row], how = random_degradation(
                img, proto.seed_offset + s.index * 97 + j, mix_prob=proto.mix_prob,
                clean_prob=proto.clean_prob, max_severity=proto.max_severity,
                kinds=proto.kinds)
            if proto.camera_landmarks:
                marks[row] = lm * how.size_factor()
        owners += [s] * per
    source = np.array([s.index for s in owners])
    return out, owners, source, marks


def evaluate(prepared: Path, models: list[str], teacher_path: Path, comparators: list[str],
             max_per_id: int, k: int, out: Path, proto: Protocol) -> dict[str, object]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    crops, samples = load_prepared(prepared)
    items, owners, source, marks = _items(crops, samples, max_per_id, k, proto)
    names = sorted({s.identity for s in owners})
    label = {n: i for i, n in enumerate(names)}
    ident = np.array([label[s.identity] for s in owners])
    print(f"protocol {proto.name}: {len(items)} items from {len(set(source))} photos of "
          f"{len(names)} identities ({proto.half} identities)")

    teacher = OnnxRecogniser(teacher_path)
    embs = {"teacher": teacher.embed(items, progress="teacher")}
    if "dlib" in comparators:
        embs["dlib"] = cached_embed(out, "dlib", items,
                                    lambda c: DlibRecogniser().embed(c, progress="dlib"))

    # Quality of every item by every method.
    quality: dict[str, npt.NDArray[np.floating]] = {}
    for m in models:
        name, q = model_quality(m, items, marks)
        quality[name] = q
    quality.update({
        "heuristic": HeuristicScorer().score(list(items), list(marks)).quality,
        "blur (Laplacian)": laplacian(items),
        "random": np.random.default_rng(0).random(len(items)),
    })
    # Teacher's own CR: own centre from the identity's other clean photos.
    photo_rows = np.unique(source, return_index=True)[1]
    clean_emb = teacher.embed(np.asarray(crops[source[photo_rows]]))
    quality["teacher CR (ceiling)"] = loo_certainty_ratio(
        embs["teacher"], ident, source, clean_emb, ident[photo_rows], source[photo_rows])[0]

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
            # The floor: pairs discarded in the order of their own genuine score, i.e.
            # every failing pair first. No quality measure can do better.
            curves[(comp, fmr)][ORACLE] = edc(gen, gen, thr)
            results[key][ORACLE] = round(pauc(curves[(comp, fmr)][ORACLE]), 4)
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

    methods = [*quality, ORACLE]
    trivial = ("heuristic", "blur (Laplacian)", "random")
    learned_names = list(quality)[: len(models)]
    lines = ["| comparator @ FMR | " + " | ".join(methods) + " | FNMR at 0% | "
             + " | ".join(f"{m} ÷ best trivial (oracle's share)" for m in learned_names)
             + " |", "|---" * (len(methods) + 2 + len(learned_names)) + "|"]
    for key, row in results.items():
        best = min(row[m] for m in trivial)
        gain = best - row[ORACLE]  # what a perfect order gains over the best trivial one
        lines.append(f"| {key} | " + " | ".join(f"{row[m]:.3f}" for m in methods)
                     + f" | {row['FNMR at 0%']:.3f} | "
                     + " | ".join(f"{row[m] / best:.3f} ({(best - row[m]) / gain:.2f})"
                                  for m in learned_names) + " |")
    table = "\n".join(lines)
    summary = {"items": len(items), "identities": len(names), "genuine_pairs": n_gen,
               "protocol": asdict(proto), "copies_per_photo": k,
               "impostor_pairs": n_imp, "pauc_0_30": results,
               "models": learned_names,
               "best_trivial": {key: min(row[m] for m in trivial)
                                for key, row in results.items()}}
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "table.md").write_text(table + "\n")
    print(f"genuine pairs {n_gen}, impostor pairs {n_imp}")
    print("pAUC over 0–30 % discarded (lower is better; random ≈ 1):")
    print(table)
    print(f"EDC plot: {out / 'edc.png'}")
    return summary

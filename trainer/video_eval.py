"""The real-video benchmark: does the gate's pick help the recogniser on real footage?

``python -m trainer evaluate-video`` runs the pipeline on identity-pure clips
(:mod:`trainer.realvideo`), cuts each person's scored crops into segments of 1.5 s and
lets every selector pick one crop per segment:

- each quality model under test (highest quality), with ``--size-weight W`` also fused
  with the face's size (W quality points per doubling of the box area) and with
  ``--consensus-weight W`` with the crop's agreement with its track (W points per
  percent; ``select.consensus_weight``), ``heuristic``, the largest face (box area), the
  detector's score, Laplacian sharpness, and the track consensus alone (the crop whose
  edge layout agrees best with its whole track's);
- ``random``: the expected value over every crop of each segment (no draw, no noise);
- ``oracle``: for each compared pair of segments, the pair of crops the comparator likes
  best (the ceiling of any selector);
- ``oracle, one pick a segment``: the crop of each segment nearest the person's other
  segments, as the comparator sees them (the ceiling of a selector that, like the gate,
  picks once per segment).

Each person weighs the same in the means, however long their clip.

Genuine comparisons are pick vs pick across the segments of one person; the verification
threshold is fixed at FMR 1e-2 on impostor pairs (every crop against every crop of the
other people of the same half). Per selector and comparator: the mean genuine
similarity, the verification rate at that threshold, and the **headroom captured**,
(selector − random) / (oracle − random), of each; beside it the same gain as a share of
what the best one-pick selector reaches, (selector − random) / (one pick − random): the
pair oracle picks with hindsight of both segments, which no selector of one crop a
segment can, so its headroom reads low even for the best possible gate. Each half
(``dev``, ``test``) is reported on its own; models are chosen on ``dev`` only. Beside
each selector: its headroom minus the first model's, with a paired interval (the same
people resampled for both), the figure that says whether one selector beats another.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.geometry import log2_area as box_log2_area
from trainer.realvideo import (
    SPLITS,
    ClipCrops,
    Segment,
    clip_crops,
    load_clips,
    name_tracks,
    read_gallery,
    segments,
)

FMR = 1e-2
RANDOM, ORACLE = "random", "oracle"
SEGMENT_ORACLE = "oracle, one pick a segment"
Scores = npt.NDArray[np.float64]


def picks(segs: Sequence[Segment], score: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
    """The row each segment's selector picks: its highest score (first on ties)."""
    return np.array([s.rows[int(np.argmax(score[s.rows]))] for s in segs], np.intp)


def segment_oracle(emb: npt.NDArray[np.float32], segs: Sequence[Segment]
                   ) -> npt.NDArray[np.intp]:
    """The best a selector that picks one crop per segment could do, as the comparator
    sees it: each segment's crop nearest the mean of the person's other segments'
    crops. (``oracle`` picks anew for every pair of segments, which no selector can.)"""
    out = np.empty(len(segs), np.intp)
    for i, s in enumerate(segs):
        others = [t.rows for j, t in enumerate(segs) if j != i and t.identity == s.identity]
        if not others:
            out[i] = s.rows[0]
            continue
        centre = emb[np.concatenate(others)].mean(0)
        out[i] = s.rows[int(np.argmax(emb[s.rows] @ centre))]
    return out


def genuine_pairs(segs: Sequence[Segment]) -> list[tuple[int, int]]:
    """Every pair (i < j) of segments of the same person."""
    return [(i, j) for i in range(len(segs)) for j in range(i + 1, len(segs))
            if segs[i].identity == segs[j].identity]


def impostor_threshold(emb: npt.NDArray[np.float32], identity: Sequence[str],
                       fmr: float = FMR) -> float:
    """Similarity exceeded by a fraction ``fmr`` of all crop pairs of different people."""
    ids = np.array(identity)
    vals = []
    for s in range(0, len(emb), 1024):
        sims = emb[s : s + 1024] @ emb.T
        other = ids[s : s + 1024, None] != ids[None, :]
        upper = np.arange(s, s + len(sims))[:, None] < np.arange(len(emb))[None, :]
        vals.append(sims[other & upper])
    imp = np.concatenate(vals)
    if imp.size == 0:
        raise SystemExit("the impostor threshold needs at least two people in a half")
    return float(np.quantile(imp, 1.0 - fmr))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One selector under one comparator: mean genuine similarity, verification rate."""

    similarity: float
    verification: float
    per_person: tuple[float, ...] = ()  # mean genuine similarity of each person (sorted)


def pair_weights(segs: Sequence[Segment], pairs: Sequence[tuple[int, int]]
                 ) -> npt.NDArray[np.float64]:
    """Each person counts once: a pair's weight is 1 / (that person's pairs). Pairs grow
    with the square of a clip's length, so a long clip would otherwise decide alone."""
    per: dict[str, int] = {}
    for i, _ in pairs:
        per[segs[i].identity] = per.get(segs[i].identity, 0) + 1
    w = np.array([1.0 / per[segs[i].identity] for i, _ in pairs], np.float64)
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def compare(emb: npt.NDArray[np.float32], segs: Sequence[Segment],
            pairs: Sequence[tuple[int, int]], chosen: Mapping[str, npt.NDArray[np.intp]],
            threshold: float) -> dict[str, Outcome]:
    """Every selector's outcome on the genuine ``pairs`` (each person weighted equally,
    :func:`pair_weights`), plus ``random`` (the expectation over every crop pair of the
    two segments) and ``oracle`` (their best crop pair)."""
    sims: dict[str, list[float]] = {k: [] for k in chosen}
    rnd_sim, rnd_ver, ora_sim = [], [], []
    for i, j in pairs:
        block = emb[segs[i].rows] @ emb[segs[j].rows].T
        for k, rows in chosen.items():
            sims[k].append(float(emb[rows[i]] @ emb[rows[j]]))
        rnd_sim.append(float(block.mean()))
        rnd_ver.append(float((block >= threshold).mean()))
        ora_sim.append(float(block.max()))
    w = pair_weights(segs, pairs)
    who = np.array([segs[i].identity for i, _ in pairs])
    people = sorted(set(who.tolist()))

    def outcome(sim: list[float], ver: npt.NDArray[np.floating] | npt.NDArray[np.bool_]
                ) -> Outcome:
        a = np.array(sim)
        return Outcome(float(w @ a), float(w @ ver.astype(np.float64)),
                       tuple(float(a[who == p].mean()) for p in people))

    out = {k: outcome(v, np.array(v) >= threshold) for k, v in sims.items()}
    out[RANDOM] = outcome(rnd_sim, np.array(rnd_ver))
    out[ORACLE] = outcome(ora_sim, np.array(ora_sim) >= threshold)
    return out


def headroom(selector: float, random: float, oracle: float) -> float:
    """Share of the gap between random picks and the best picks that a selector closes."""
    gap = oracle - random
    return (selector - random) / gap if gap > 0 else float("nan")


def headroom_interval(sel: Outcome, rnd: Outcome, ora: Outcome, n: int = 2000,
                      seed: int = 0, minus: Outcome | None = None) -> tuple[float, float]:
    """90 % bootstrap interval of the similarity headroom, people resampled with
    replacement: how far the figure could move with another set of people. With
    ``minus``: of the difference between the headroom of ``sel`` and of ``minus``, paired
    (the same people drawn for both), which is much tighter than two intervals side by
    side when both selectors do well or badly on the same people."""
    s, r, o = (np.array(x.per_person) for x in (sel, rnd, ora))
    m = r if minus is None else np.array(minus.per_person)
    if len(s) < 2:
        return float("nan"), float("nan")
    draw = np.random.default_rng(seed).integers(0, len(s), (n, len(s)))
    gap = o[draw].mean(1) - r[draw].mean(1)
    h = (s[draw].mean(1) - m[draw].mean(1)) / np.where(gap > 0, gap, np.nan)
    lo, hi = np.nanquantile(h, [0.05, 0.95])
    return float(lo), float(hi)


def log2_area(items: ClipCrops) -> Scores:
    """log2 of each face box's area in source pixels (the largest-face cue; the product's
    own formula, :func:`stream_gate.geometry.log2_area`)."""
    return box_log2_area(items.box)


def size_fused(quality: Scores, items: ClipCrops, weight: float) -> Scores:
    """Quality plus ``weight`` points per doubling of the face's area: the model's view
    of the crop and the resolution it came from, which the 112-px crop no longer shows."""
    out: Scores = quality + weight * log2_area(items)
    return out


def track_agreement(items: ClipCrops,
                    embeddings: npt.NDArray[np.float32] | None = None) -> Scores:
    """Each crop's agreement (percent) with every crop of its track, as
    ``select.consensus_weight`` ranks it when a track ends (policy ``track_end``), with
    the product's own functions: on the crops' edges, or on ``embeddings`` (N×D), a
    quality model's signature output."""
    from stream_gate.stages.select import agreement, appearance_signature, unit_signature

    out: Scores = np.zeros(len(items))
    if not len(items):
        return out
    sig = np.stack([unit_signature(e) for e in embeddings] if embeddings is not None
                   else [appearance_signature(c) for c in items.crops])
    for rows in items.track_rows().values():
        out[rows] = agreement(sig[rows], sig[rows].sum(0))
    return out


def baseline_scores(items: ClipCrops) -> dict[str, Scores]:
    """Per-crop scores of the trivial selectors (higher = picked first)."""
    from stream_gate.stages.align_score.heuristic import HeuristicScorer
    from trainer.evaluate import laplacian

    marks = list(items.landmarks)
    return {
        "heuristic": HeuristicScorer().score(list(items.crops), marks).quality.astype(float),
        "largest face": log2_area(items),
        "detector score": items.det_score.astype(np.float64),
        "Laplacian": laplacian(items.crops),
        "track consensus": track_agreement(items),
    }


def contact_sheet(items: ClipCrops, segs: Sequence[Segment],
                  chosen: Mapping[str, npt.NDArray[np.intp]], path: Path,
                  per_identity: int = 3, thumb: int = 80) -> int:
    """A PNG of the picks: one row per segment (at most ``per_identity`` a person, spread
    over the clip), one column per selector; the selectors' names on top. Returns rows."""
    by_id: dict[str, list[int]] = {}
    for i, s in enumerate(segs):
        by_id.setdefault(s.identity, []).append(i)
    rows = [r for ident in sorted(by_id) for r in
            np.array(by_id[ident])[np.unique(np.linspace(0, len(by_id[ident]) - 1,
                                                         per_identity).round().astype(int))]]
    label_w, head_h = 170, 48
    names = list(chosen)
    sheet = np.full((head_h + thumb * len(rows), label_w + thumb * len(names), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for c, name in enumerate(names):  # up to 3 lines of 11 characters a column
        for k, line in enumerate(textwrap.wrap(name, 11)[:3]):
            cv2.putText(sheet, line, (label_w + c * thumb + 2, 14 + 14 * k), font, 0.38,
                        (0, 0, 0), 1, cv2.LINE_AA)
    for r, si in enumerate(rows):
        s = segs[si]
        y = head_h + r * thumb
        cv2.putText(sheet, s.identity[:22], (4, y + 30), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(sheet, f"t{s.track} seg {s.index} ({len(s.rows)})", (4, y + 50), font,
                    0.35, (80, 80, 80), 1, cv2.LINE_AA)
        for c, name in enumerate(names):
            crop = cv2.resize(items.crops[chosen[name][si]], (thumb, thumb),
                              interpolation=cv2.INTER_AREA)
            sheet[y : y + thumb, label_w + c * thumb : label_w + (c + 1) * thumb] = crop
    cv2.imwrite(str(path), sheet)
    return len(rows)


def run_benchmark(items: ClipCrops, scores: Mapping[str, Scores],
                  embs: Mapping[str, npt.NDArray[np.float32]], segment_s: float,
                  out: Path | None = None, halves: Sequence[str] = SPLITS) -> dict[str, Any]:
    """Every selector under every comparator on each of ``halves``; sheets into ``out``.
    Each selector's headroom is also given minus the first selector's (the reference,
    the first model under test), with its paired interval."""
    reference = next(iter(scores))
    segs_all = segments(items, segment_s)
    report: dict[str, Any] = {}
    for split in halves:
        segs = [s for s in segs_all if s.split == split]
        if not segs:
            continue
        rows = np.unique(np.concatenate([s.rows for s in segs]))
        pairs = genuine_pairs(segs)
        chosen = {name: picks(segs, sc) for name, sc in scores.items()}
        half: dict[str, Any] = {
            "identities": sorted({s.identity for s in segs}),
            "clips": sorted({s.clip for s in segs}), "segments": len(segs),
            "crops": len(rows), "genuine_pairs": len(pairs),
            "tracks": {f"{s.clip}/{s.track}": s.identity for s in segs}, "comparators": {}}
        for comp, emb in embs.items():
            thr = impostor_threshold(emb[rows], [items.identity[r] for r in rows])
            best_single = {SEGMENT_ORACLE: segment_oracle(emb, segs)}
            res = compare(emb, segs, pairs, {**chosen, **best_single}, thr)
            rnd, ora, ref = res[RANDOM], res[ORACLE], res[reference]
            ref_h = headroom(ref.similarity, rnd.similarity, ora.similarity)
            ceiling = res[SEGMENT_ORACLE].similarity
            half["comparators"][comp] = {"threshold": round(thr, 5), "reference": reference,
                                         "selectors": {
                k: {"similarity": round(v.similarity, 4),
                    "verification": round(v.verification, 4),
                    "headroom_similarity": round(headroom(v.similarity, rnd.similarity,
                                                          ora.similarity), 4),
                    "headroom_similarity_90": [round(x, 3) for x in
                                               headroom_interval(v, rnd, ora)],
                    "of_one_pick_ceiling": round(headroom(v.similarity, rnd.similarity,
                                                          ceiling), 4),
                    "minus_reference": round(headroom(v.similarity, rnd.similarity,
                                                      ora.similarity) - ref_h, 4),
                    "minus_reference_90": [round(x, 3) for x in
                                           headroom_interval(v, rnd, ora, minus=ref)],
                    "headroom_verification": round(headroom(
                        v.verification, rnd.verification, ora.verification), 4)}
                for k, v in res.items()}}
        if out is not None:
            half["contact_sheet"] = str(out / f"picks-{split}.png")
            contact_sheet(items, segs, chosen, out / f"picks-{split}.png")
        report[split] = half
    return report


def table(report: Mapping[str, Any]) -> str:
    """Markdown: per half and comparator, one row per selector."""
    lines = []
    for split, half in report.items():
        for comp, res in half["comparators"].items():
            lines += [f"### {split}: comparator {comp} ({len(half['identities'])} people, "
                      f"{half['segments']} segments, {half['genuine_pairs']} genuine pairs, "
                      f"threshold {res['threshold']:.3f} at FMR {FMR:g})", "",
                      "| selector | mean genuine sim | headroom (sim) | its 90 % interval "
                      f"(people resampled) | minus {res['reference']}'s (paired 90 %) | "
                      "of the one-pick ceiling | VR @ FMR 1e-2 | headroom (VR) |",
                      "|---|---|---|---|---|---|---|---|"]
            for k, v in res["selectors"].items():
                lo, hi = v["headroom_similarity_90"]
                dlo, dhi = v["minus_reference_90"]
                lines.append(f"| {k} | {v['similarity']:.4f} | {v['headroom_similarity']:.3f}"
                             f" | {lo:.2f} – {hi:.2f} | {v['minus_reference']:+.3f} "
                             f"({dlo:+.2f} – {dhi:+.2f}) | {v['of_one_pick_ceiling']:.3f} | "
                             f"{v['verification']:.4f} | "
                             f"{v['headroom_verification']:.3f} |")
            lines.append("")
    return "\n".join(lines)


def evaluate_video(clip_list: Path, media: Path, models: Sequence[str], teacher_path: Path,
                   comparators: Sequence[str], out: Path, fps: float = 10.0,
                   segment_s: float = 1.5, gallery: Path | None = None,
                   gallery_min_sim: float = 0.45, halves: Sequence[str] = SPLITS,
                   size_weights: Sequence[float] = (),
                   consensus_weights: Sequence[float] = ()) -> dict[str, Any]:
    """The whole benchmark: dumps (cached), crops, scores, embeddings, report, sheets.
    ``size_weights``: each model also fused with the face's size (:func:`size_fused`);
    ``consensus_weights``: with the crop's agreement with its track
    (:func:`track_agreement`)."""
    from stream_gate.log import setup_logging
    from trainer.evaluate import model_scores
    from trainer.recognisers import DlibRecogniser, OnnxRecogniser, cached_embed

    setup_logging("warning")
    out.mkdir(parents=True, exist_ok=True)
    clips = [c for c in load_clips(clip_list, media) if c.split in halves]
    items = clip_crops(clips, out, fps)
    print(f"{len(items)} scored crops in {len(set(items.clip))} clips", flush=True)
    teacher = OnnxRecogniser(teacher_path)
    t_emb = teacher.embed(items.crops, progress="teacher")
    if any(not c.identity for c in clips):
        gal = read_gallery(gallery) if gallery is not None else {}
        if gal:
            from trainer.data import photo_detector

            detector = photo_detector()  # one for every person of the gallery
            centres = {k: _mean_embedding(teacher, v, detector) for k, v in gal.items()}
        else:
            centres = {}
        keep = name_tracks(items, t_emb, centres, gallery_min_sim,
                           {c.identity: c.split for c in clips if c.identity})
        items, t_emb = items.subset(keep), t_emb[keep]
    embs: dict[str, npt.NDArray[np.float32]] = {}
    if "teacher" in comparators:
        embs["teacher"] = t_emb
    if "dlib" in comparators:
        embs["dlib"] = cached_embed(out, "dlib", items.crops,
                                    lambda c: DlibRecogniser().embed(c, progress="dlib"))
    scores: dict[str, Scores] = {}
    baselines = baseline_scores(items)
    for m in models:
        name, s = model_scores(m, items.crops, items.landmarks)
        scores[name] = s.quality.astype(np.float64)
        for w in size_weights:
            scores[f"{name} + {w:g}/2x area"] = size_fused(scores[name], items, w)
        # The model's own signature where it has one (v2), else the edges, as the product.
        agree = (baselines["track consensus"] if s.signature is None
                 else track_agreement(items, s.signature))
        for w in consensus_weights:
            scores[f"{name} + {w:g}x consensus"] = scores[name] + w * agree
    scores.update(baselines)
    report = run_benchmark(items, scores, embs, segment_s, out, halves)
    summary = {"clip_list": str(clip_list), "fps": fps, "segment_s": segment_s,
               "models": list(scores)[: len(models)], "halves": report}
    save_report(summary, table(report), out / "results.json", out / "table.md")
    print(f"picks: {out}/picks-*.png")
    return summary


def save_report(summary: Mapping[str, Any], text: str, json_path: Path, md_path: Path
                ) -> None:
    """A benchmark's figures as JSON and its markdown table, the table printed."""
    json_path.write_text(json.dumps(summary, indent=1) + "\n")
    md_path.write_text(text + "\n")
    print(text)
    print(f"results: {json_path}")


def _mean_embedding(teacher: Any, photos: Sequence[Path], detector: Any
                    ) -> npt.NDArray[np.float32]:
    """The L2-normalised mean embedding of a gallery person's aligned photos."""
    from trainer.data import align_photos

    crops = align_photos(list(photos), detector=detector)
    if len(crops) == 0:
        raise SystemExit(f"gallery: no face found in {photos[0].parent}")
    e = teacher.embed(crops).mean(axis=0)
    out: npt.NDArray[np.float32] = (e / np.linalg.norm(e)).astype(np.float32)
    return out

"""The emission benchmark: what does the recogniser hold, and when, under a select policy?

``python -m trainer evaluate-emissions`` replays each person's scored crops (the dumps
of ``evaluate-video``) through the product's own :class:`~stream_gate.stages.select.Selector`
under several select settings, crop by crop as the pipeline feeds it (a track confirmed
at its ``min_hits``-th crop, ended after its last), and scores what each setting emits.
``evaluate-video`` asks which crop of a window is best; this asks what ``improving``
asks: how early the recogniser gets a crop, how good it is, and whether later emissions
improve on it.

A crop's worth is its similarity, under a comparator, to the person's *reference*: the
mean embedding of the person's crops more than ``gap_s`` seconds away from it in the
same clip (a gallery the crop did not help make, and not from the same moment). At
checkpoints 0.5, 1, 2 and 4 s after a track's first crop (tracks that lasted that long)
and at its end, per setting:

- ``best held``: the best emitted crop so far (the recogniser keeps its best match);
- ``latest``: the last crop emitted so far (what the gate thinks best);
- beside them ``random`` (the mean over the track's crops so far: an emission at random)
  and ``oracle`` (the best crop so far: the ceiling of any causal gate), and the headroom
  captured, (setting − random) / (oracle − random), with each person weighing the same;
- how many tracks hold a crop by then, crops emitted per track, and when the first came.

More emissions can only raise ``best held``: read it with the emissions per track.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_gate.config import SelectConfig
from stream_gate.stages.select import build_selector
from stream_gate.types import Candidate, Emission, Scores, TrackEnd
from trainer.realvideo import SPLITS, ClipCrops

CHECKPOINTS = (0.5, 1.0, 2.0, 4.0)
END = "end"
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Sent:
    """One emission of a replay: the crop's row and when it was sent (media seconds
    after the track's first crop; a track_end emission at the track's last crop)."""

    row: int
    at: float


def replay(items: ClipCrops, rows: Sequence[int], scores: Scores, cfg: SelectConfig,
           min_hits: int = 3, model: str = "replay") -> list[Sent]:
    """Every emission the product's selector makes for one track (``rows`` in time order),
    fed one crop at a time, confirmed from its ``min_hits``-th crop, ended after its last."""
    selector = build_selector(cfg, model)
    t0 = float(items.t[rows[0]])
    row_of = {int(items.frame_index[r]): int(r) for r in rows}
    track = int(items.track[rows[0]])
    out: list[Sent] = []

    def sent(emissions: list[Emission], t: float) -> None:
        out.extend(Sent(row_of[e.candidate.frame_index], t - t0) for e in emissions)

    for k, r in enumerate(rows, start=1):
        cand = Candidate(
            stream_id=items.clip[r], track_id=track, frame_index=int(items.frame_index[r]),
            pts=None, t=float(items.t[r]), wall_ms=0, box=items.box[r],
            landmarks=items.landmarks[r], det_score=float(items.det_score[r]),
            crop=items.crops[r], quality=float(scores.quality[r]),
            quality_raw=float(scores.raw[r]),
            signature=None if scores.signature is None else scores.signature[r])
        sent(selector.offer(cand, confirmed=k >= min_hits), float(items.t[r]))
    sent(selector.end(TrackEnd(track, confirmed=len(rows) >= min_hits, hits=len(rows))),
         float(items.t[rows[-1]]))
    return out


def reference_similarity(items: ClipCrops, emb: npt.NDArray[np.float32], gap_s: float
                         ) -> FloatArray:
    """Each crop's cosine similarity to its person's reference: the mean embedding of the
    same person's crops of the same clip more than ``gap_s`` seconds away (NaN where
    there are none). ``emb`` rows are unit length."""
    out: FloatArray = np.full(len(items), np.nan)
    groups: dict[tuple[str, str], list[int]] = {}
    for r in range(len(items)):
        groups.setdefault((items.clip[r], items.identity[r]), []).append(r)
    for rows in groups.values():
        idx = np.array(rows)
        t = items.t[idx]
        far = np.abs(t[:, None] - t[None, :]) > gap_s
        total = far.astype(np.float64) @ emb[idx].astype(np.float64)  # sum of far crops
        norm = np.linalg.norm(total, axis=1)
        ok = norm > 0
        out[idx[ok]] = np.einsum("ij,ij->i", emb[idx[ok]].astype(np.float64),
                                 total[ok]) / norm[ok]
    return out


@dataclass(frozen=True, slots=True)
class TrackView:
    """One track at one checkpoint, under one setting (similarities to the reference)."""

    random: float
    oracle: float
    best: float | None  # best emitted so far (None: nothing emitted yet)
    latest: float | None
    emitted: int


def at_checkpoint(items: ClipCrops, rows: Sequence[int], sims: FloatArray,
                  emitted: Sequence[Sent], checkpoint: float | str) -> TrackView | None:
    """The track seen ``checkpoint`` seconds after its first crop (``END``: whole), or
    None when it did not last that long or none of its crops so far has a reference."""
    idx = np.array(rows)
    since = items.t[idx] - items.t[idx[0]]
    if checkpoint == END:
        horizon = float("inf")
    else:
        horizon = float(checkpoint)
        if since[-1] < horizon:
            return None
    seen = sims[idx[since <= horizon + 1e-9]]
    seen = seen[~np.isnan(seen)]
    if not len(seen):
        return None
    got = [sims[s.row] for s in emitted if s.at <= horizon + 1e-9 and not np.isnan(sims[s.row])]
    return TrackView(float(seen.mean()), float(seen.max()), max(got) if got else None,
                     got[-1] if got else None, len(got))


def _people_mean(values: Mapping[str, list[float]]) -> dict[str, float]:
    return {p: float(np.mean(v)) for p, v in values.items() if v}


def headroom_share(value: Mapping[str, float], random: Mapping[str, float],
                   oracle: Mapping[str, float]) -> float:
    """(value − random) / (oracle − random) of the per-person means over the people
    ``value`` has (each person weighs the same)."""
    people = sorted(value)
    if not people:
        return float("nan")
    v, r, o = (np.mean([m[p] for p in people]) for m in (value, random, oracle))
    return float((v - r) / (o - r)) if o > r else float("nan")


def paired_interval(value: Mapping[str, float], minus: Mapping[str, float],
                    random: Mapping[str, float], oracle: Mapping[str, float],
                    n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90 % interval of headroom(value) − headroom(minus), the same people resampled for
    both (the people both have)."""
    people = sorted(set(value) & set(minus))
    if len(people) < 2:
        return float("nan"), float("nan")
    a, b, r, o = (np.array([m[p] for p in people]) for m in (value, minus, random, oracle))
    draw = np.random.default_rng(seed).integers(0, len(people), (n, len(people)))
    gap = o[draw].mean(1) - r[draw].mean(1)
    d = (a[draw].mean(1) - b[draw].mean(1)) / np.where(gap > 0, gap, np.nan)
    lo, hi = np.nanquantile(d, [0.05, 0.95])
    return float(lo), float(hi)


def run(items: ClipCrops, settings: Mapping[str, tuple[SelectConfig, Scores]],
        embs: Mapping[str, npt.NDArray[np.float32]], min_hits: int = 3, gap_s: float = 1.0,
        halves: Sequence[str] = SPLITS) -> dict[str, Any]:
    """Every setting (name -> select settings and the scores it ranks by) under every
    comparator, per half; differences are paired against the first setting."""
    tracks = sorted(items.track_rows().items())
    replays = {name: {key: replay(items, rows, sc, cfg, min_hits) for key, rows in tracks}
               for name, (cfg, sc) in settings.items()}
    reference = next(iter(settings))
    report: dict[str, Any] = {}
    for split in halves:
        mine = [(key, rows) for key, rows in tracks if items.split[rows[0]] == split]
        if not mine:
            continue
        half: dict[str, Any] = {"people": len({items.identity[r[0]] for _, r in mine}),
                                "tracks": len(mine), "comparators": {}}
        for comp, emb in embs.items():
            sims = reference_similarity(items, emb, gap_s)
            res: dict[str, Any] = {}
            for cp in (*CHECKPOINTS, END):
                views = {name: {key: at_checkpoint(items, rows, sims, replays[name][key], cp)
                                for key, rows in mine} for name in settings}
                base = views[reference]
                who = {key: items.identity[rows[0]] for key, rows in mine}
                rnd: dict[str, list[float]] = {}
                ora: dict[str, list[float]] = {}
                for key, v in base.items():
                    if v is not None:
                        rnd.setdefault(who[key], []).append(v.random)
                        ora.setdefault(who[key], []).append(v.oracle)
                rnd_p, ora_p = _people_mean(rnd), _people_mean(ora)
                row: dict[str, Any] = {"tracks": sum(v is not None for v in base.values()),
                                       "random": round(float(np.mean(list(rnd_p.values())))
                                                       if rnd_p else float("nan"), 4),
                                       "oracle": round(float(np.mean(list(ora_p.values())))
                                                       if ora_p else float("nan"), 4),
                                       "settings": {}}
                per_setting: dict[str, dict[str, float]] = {}
                for name, vs in views.items():
                    best: dict[str, list[float]] = {}
                    latest: dict[str, list[float]] = {}
                    holding, emitted = 0, []
                    for key, v in vs.items():
                        if v is None:
                            continue
                        emitted.append(v.emitted)
                        if v.best is not None and v.latest is not None:
                            holding += 1
                            best.setdefault(who[key], []).append(v.best)
                            latest.setdefault(who[key], []).append(v.latest)
                    best_p = _people_mean(best)
                    per_setting[name] = best_p
                    lo, hi = paired_interval(best_p, per_setting[reference], rnd_p, ora_p)
                    row["settings"][name] = {
                        "holding": holding,
                        "emitted_per_track": round(float(np.mean(emitted)), 2)
                        if emitted else 0.0,
                        "best_held": round(headroom_share(best_p, rnd_p, ora_p), 4),
                        "latest": round(headroom_share(_people_mean(latest), rnd_p, ora_p), 4),
                        "best_held_minus_reference_90": [round(lo, 3), round(hi, 3)]}
                res[str(cp)] = row
            keys = {key for key, _ in mine}
            firsts = {name: [r[0].at for key, r in replays[name].items() if r and key in keys]
                      for name in settings}
            half["comparators"][comp] = {
                "checkpoints": res, "reference": reference,
                "first_emission_s_median": {n: round(float(np.median(f)), 2) if f else None
                                            for n, f in firsts.items()}}
        report[split] = half
    return report


def table(report: Mapping[str, Any]) -> str:
    """Markdown: per half and comparator, one row per setting, one column pair per
    checkpoint (headroom of the best held crop; tracks holding one / tracks)."""
    lines = []
    for split, half in report.items():
        for comp, res in half["comparators"].items():
            cps = list(res["checkpoints"])
            lines += [f"### {split}: comparator {comp} ({half['people']} people, "
                      f"{half['tracks']} tracks; headroom of the best crop held, "
                      "tracks holding one / tracks lasting that long)", "",
                      "| setting | " + " | ".join(f"{c} s" if c != END else "end"
                                                  for c in cps)
                      + " | latest at end | minus the first (paired 90 %, end) "
                      "| emitted a track | first emission (median s) |",
                      "|---" * (len(cps) + 5) + "|"]
            for name in res["checkpoints"][END]["settings"]:
                cells = []
                for c in cps:
                    cell = res["checkpoints"][c]
                    s = cell["settings"][name]
                    cells.append(f"{s['best_held']:.3f} ({s['holding']}/{cell['tracks']})")
                end = res["checkpoints"][END]["settings"][name]
                lo, hi = end["best_held_minus_reference_90"]
                first = res["first_emission_s_median"][name]
                lines.append(f"| {name} | " + " | ".join(cells)
                             + f" | {end['latest']:.3f} | {lo:+.2f} – {hi:+.2f} | "
                             f"{end['emitted_per_track']:.2f} | "
                             f"{'-' if first is None else f'{first:.2f}'} |")
            lines.append("")
    return "\n".join(lines)


def evaluate_emissions(clip_list: Path, media: Path, model: str, teacher_path: Path,
                       comparators: Sequence[str], out: Path, fps: float = 10.0,
                       consensus_weight: float = 3.0, gap_s: float = 1.0,
                       halves: Sequence[str] = SPLITS) -> dict[str, Any]:
    """The whole benchmark on the clips of ``clip_list`` (identity clips; dumps cached in
    ``out`` as ``evaluate-video`` makes them): the four settings that matter, the policy
    ``improving`` and ``track_end``, each by quality alone and with the consensus."""
    from stream_gate.config import TrackConfig
    from stream_gate.log import setup_logging
    from trainer.evaluate import model_scores
    from trainer.realvideo import clip_crops, load_clips
    from trainer.recognisers import DlibRecogniser, OnnxRecogniser, cached_embed
    from trainer.video_eval import save_report

    setup_logging("warning")
    out.mkdir(parents=True, exist_ok=True)
    clips = [c for c in load_clips(clip_list, media) if c.split in halves and c.identity]
    items = clip_crops(clips, out, fps)
    print(f"{len(items)} scored crops in {len(set(items.clip))} clips", flush=True)
    embs: dict[str, npt.NDArray[np.float32]] = {}
    if "teacher" in comparators:
        embs["teacher"] = OnnxRecogniser(teacher_path).embed(items.crops, progress="teacher")
    if "dlib" in comparators:
        embs["dlib"] = cached_embed(out, "dlib", items.crops,
                                    lambda c: DlibRecogniser().embed(c, progress="dlib"))
    name, scores = model_scores(model, items.crops, items.landmarks)
    w = consensus_weight
    settings = {
        "improving": (SelectConfig(policy="improving", consensus_weight=0.0), scores),
        f"improving + {w:g}x consensus": (SelectConfig(policy="improving",
                                                       consensus_weight=w), scores),
        "track_end": (SelectConfig(policy="track_end", consensus_weight=0.0), scores),
        f"track_end + {w:g}x consensus": (SelectConfig(policy="track_end",
                                                       consensus_weight=w), scores),
    }
    report = run(items, settings, embs, TrackConfig().min_hits, gap_s, halves)
    summary = {"clip_list": str(clip_list), "model": name, "fps": fps, "gap_s": gap_s,
               "settings": list(settings), "halves": report}
    save_report(summary, table(report), out / "emissions.json", out / "emissions.md")
    return summary

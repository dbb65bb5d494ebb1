"""The real training set (DSL-FIQA's second set): faces tracked through real video.

``python -m trainer real-data`` runs the pipeline on the clip list's ``train`` clips
(several people: every track is a pseudo-identity of its own) and, with ``--splits
train,dev``, its ``dev`` clips (one named person: all that person's tracks are one
identity), never its ``test`` clips. The default leaves ``dev`` out: models are chosen
on it, and a model trained on the dev clips' own crops would be chosen on data it saw.
Each crop gets the teacher's certainty ratio as its target:

- own centre: the mean teacher embedding of the same identity's crops in its *other*
  segments (leave-segment-out, as the LFW set leaves the photo out), so a crop is never
  compared with itself or its neighbours in time;
- negative centres: the LFW training identities (clean photos) and every identity of
  the other clips (a person may come back in a second track of the same clip, so tracks
  of one clip are never each other's negatives).

Identities with a single segment have no "other" segment and are left out. The result
is a :class:`trainer.distill.DistillSet` (``degraded`` False: real capture, no synthetic
degradation), trained on beside the LFW set.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.cr import EPS
from trainer.distill import DistillSet, Embedder
from trainer.realvideo import ClipCrops, Segment, clip_crops, load_clips, segments


def pseudo_identities(items: ClipCrops) -> None:
    """Name every track of a clip without an identity after itself, in place."""
    for r in range(len(items)):
        if not items.identity[r]:
            items.identity[r] = f"{items.clip[r]}#{int(items.track[r])}"


def other_segments_similarity(emb: npt.NDArray[np.float32], segs: Sequence[Segment],
                              n: int) -> npt.NDArray[np.float64]:
    """Each of ``n`` crops' similarity to the normalised mean of its identity's *other*
    segments (leave-segment-out, so never to itself or its neighbours in time); NaN where
    the identity has a single segment or the crop is in none."""
    out = np.full(n, np.nan)
    by_id: dict[str, list[Segment]] = defaultdict(list)
    for s in segs:
        by_id[s.identity].append(s)
    for group in by_id.values():
        if len(group) < 2:
            continue
        total = emb[np.concatenate([s.rows for s in group])].astype(np.float64).sum(0)
        for s in group:
            rest = total - emb[s.rows].astype(np.float64).sum(0)
            out[s.rows] = emb[s.rows] @ (rest / np.linalg.norm(rest))
    return out


def real_targets(emb: npt.NDArray[np.float32], items: ClipCrops, segs: list[Segment],
                 negatives: npt.NDArray[np.float32]
                 ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32],
                            npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(rows, CR, CCS, NNCCS) of every crop whose identity has another segment.

    ``negatives``: L2-normalised centres of outside identities (LFW); the other clips'
    identities are added as negatives here."""
    by_id: dict[str, list[Segment]] = defaultdict(list)
    for s in segs:
        by_id[s.identity].append(s)
    ids = sorted(by_id)
    sums = {k: emb[np.concatenate([s.rows for s in v])].astype(np.float64).sum(0)
            for k, v in by_id.items()}
    centre = np.stack([sums[k] / np.linalg.norm(sums[k]) for k in ids]).astype(np.float32)
    clips_of = {k: {s.clip for s in by_id[k]} for k in ids}
    own = other_segments_similarity(emb, segs, len(emb))
    rows_out, nn_out = [], []
    for k in ids:
        if len(by_id[k]) < 2:
            continue
        other = [b for b, j in enumerate(ids) if not clips_of[j] & clips_of[k]]
        neg = np.concatenate([negatives, centre[other]]) if other else negatives
        for s in by_id[k]:
            nn_out.append((emb[s.rows].astype(np.float64) @ neg.T.astype(np.float64)).max(1))
            rows_out.append(s.rows)
    if not rows_out:
        raise SystemExit("real-data: no identity has two segments; give longer clips")
    rows = np.concatenate(rows_out)
    ccs = own[rows].astype(np.float32)
    nnccs = np.concatenate(nn_out).astype(np.float32)
    return rows, (ccs / (nnccs + 1.0 + EPS)).astype(np.float32), ccs, nnccs


def build_real(clip_list: Path, media: Path, splits: tuple[str, ...], teacher: Embedder,
               lfw_centres: npt.NDArray[np.float32], work: Path, fps: float,
               segment_s: float) -> tuple[DistillSet, dict[str, Any]]:
    """The real set of the clip list's ``splits`` clips, and a summary of it."""
    clips = [c for c in load_clips(clip_list, media) if c.split in splits]
    if not clips:
        raise SystemExit(f"{clip_list}: no clip in {splits}")
    items = clip_crops(clips, work, fps)
    pseudo_identities(items)
    segs = segments(items, segment_s, min_crops=1)
    emb = teacher.embed(items.crops, progress="teacher real")
    rows, cr, ccs, nnccs = real_targets(emb, items, segs, lfw_centres)
    names = sorted({items.identity[r] for r in rows})
    label = {n: i for i, n in enumerate(names)}
    data = DistillSet(
        crops=items.crops[rows], cr=cr, ccs=ccs, nnccs=nnccs,
        source=rows.astype(np.int64),
        identity=np.array([label[items.identity[r]] for r in rows], np.int64),
        degraded=np.zeros(len(rows), bool), landmarks=items.landmarks[rows],
        size_factor=np.ones(len(rows), np.float32))
    summary = {"clips": [c.path.name for c in clips], "splits": list(splits),
               "samples": len(rows), "identities": len(names),
               "pseudo_identities": sum("#" in n for n in names),
               "cr_mean": float(cr.mean()), "cr_std": float(cr.std()),
               "fps": fps, "segment_s": segment_s, "teacher": teacher.name}
    return data, summary


def lfw_train_centres(prepared: Path, teacher: Embedder) -> npt.NDArray[np.float32]:
    """L2-normalised teacher centres of the LFW training identities (clean photos)."""
    from trainer.cr import identity_centres
    from trainer.data import load_prepared

    crops, samples = load_prepared(prepared)
    train = [s for s in samples if s.split == "train"]
    names = sorted({s.identity for s in train})
    label = {n: i for i, n in enumerate(names)}
    emb = teacher.embed(np.asarray(crops[[s.index for s in train]]), progress="teacher LFW")
    return identity_centres(emb, np.array([label[s.identity] for s in train]), len(names))


def write(data: DistillSet, summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data.save(out / "real")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

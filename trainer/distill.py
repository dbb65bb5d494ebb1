"""Distillation targets: degraded samples labelled with the teacher's certainty ratio.

For each prepared crop of an identity with at least two photos, we keep the clean crop
and ``k`` seeded degraded copies. The frozen teacher embeds all of them. Each sample's
own-identity centre is the mean of the teacher embeddings of the *other* clean photos of
that identity (leave-one-out, so a photo is never compared with itself); the negative
centres are the clean centres of every identity on the same side of the split,
single-photo identities included. CR = CCS / (NNCCS + 1 + ε) is the regression target.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from trainer.cr import EPS
from trainer.data import Sample, name_hash
from trainer.degrade import random_degradation

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation degradations never reuse training seeds
HARD_SEED_OFFSET = 1_500_000_000  # nor does the harder benchmark reuse the standard one's


def holdout_of(identity: str) -> str:
    """The half of a validation identity: ``val`` (choosing epochs, models, calibration)
    or ``test`` (held out for the reported figures). A salted hash, independent of the
    train/validation draw."""
    return "test" if name_hash(f"holdout:{identity}") % 2 else "val"


class Embedder(Protocol):
    name: str

    def embed(self, crops: npt.NDArray[np.uint8], batch: int = 64,
              progress: str | None = None) -> npt.NDArray[np.float32]: ...


@dataclass
class DistillSet:
    crops: npt.NDArray[np.uint8]      # N×112×112×3 BGR
    cr: npt.NDArray[np.float32]       # teacher CR targets
    ccs: npt.NDArray[np.float32]
    nnccs: npt.NDArray[np.float32]
    source: npt.NDArray[np.int64]     # index into the prepared crops
    identity: npt.NDArray[np.int64]   # identity label (per split)
    degraded: npt.NDArray[np.bool_]
    # For landmark-guided models: the detector's landmarks in the source picture (N×5×2;
    # NaN where unknown, sets made before they were kept) and how much a downscale
    # degradation shrank the face (1: not at all).
    landmarks: npt.NDArray[np.float32] | None = None
    size_factor: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        n = len(self.cr)
        if self.landmarks is None:
            self.landmarks = np.full((n, 5, 2), np.nan, np.float32)
        if self.size_factor is None:
            self.size_factor = np.ones(n, np.float32)

    def save(self, path: Path) -> None:
        np.save(path.with_suffix(".crops.npy"), self.crops)
        np.savez(path.with_suffix(".targets.npz"), cr=self.cr, ccs=self.ccs, nnccs=self.nnccs,
                 source=self.source, identity=self.identity, degraded=self.degraded,
                 landmarks=self.landmarks, size_factor=self.size_factor)

    @staticmethod
    def load(path: Path) -> DistillSet:
        t = np.load(path.with_suffix(".targets.npz"))
        crops = np.load(path.with_suffix(".crops.npy"), mmap_mode="r")
        return DistillSet(crops, t["cr"], t["ccs"], t["nnccs"], t["source"], t["identity"],
                          t["degraded"], t.get("landmarks"),
                          t.get("size_factor"))


def loo_certainty_ratio(
    emb: npt.NDArray[np.float32], ident: npt.NDArray[np.intp], source: npt.NDArray[np.intp],
    clean_emb: npt.NDArray[np.float32], clean_ident: npt.NDArray[np.intp],
    clean_source: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """CR of each sample against leave-one-out own centres and all other clean centres.

    ``clean_*`` describe the clean photos (one row per photo); a sample's own centre
    excludes the clean photo it was made from (``source``). Returns (CR, CCS, NNCCS).
    """
    n_ids = int(clean_ident.max()) + 1
    sums = np.zeros((n_ids, clean_emb.shape[1]), np.float64)
    np.add.at(sums, clean_ident, clean_emb)
    counts = np.bincount(clean_ident, minlength=n_ids)
    centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    row_of_source = {int(s): i for i, s in enumerate(clean_source)}
    ccs = np.empty(len(emb), np.float32)
    nnccs = np.empty(len(emb), np.float32)
    for s in range(0, len(emb), 2048):
        e = emb[s : s + 2048].astype(np.float64)
        own = ident[s : s + 2048]
        cos = e @ centres.T
        rows = np.arange(len(e))
        cos[rows, own] = -np.inf
        nnccs[s : s + 2048] = cos.max(axis=1)
        for r in range(len(e)):
            k = own[r]
            if counts[k] < 2:
                raise ValueError("samples need identities with at least two clean photos")
            loo = sums[k] - clean_emb[row_of_source[int(source[s + r])]]
            ccs[s + r] = float(e[r] @ loo / max(np.linalg.norm(loo), 1e-12))
    cr = ccs / (nnccs + 1.0 + EPS)
    return cr.astype(np.float32), ccs, nnccs


def build(crops: npt.NDArray[np.uint8], samples: list[Sample], split: str, teacher: Embedder,
          k_degraded: int, seed: int, seed_offset: int = 0, clean: bool = True,
          kinds: tuple[str, ...] | None = None, hold_out_test: bool = False) -> DistillSet:
    """Clean + ``k_degraded`` degraded copies of every multi-photo identity of ``split``
    (degradations drawn from ``kinds``, default all). ``hold_out_test``: the validation
    identities of :func:`holdout_of`'s ``test`` half are left out (kept for the reported
    figures)."""
    side = [s for s in samples if s.split == split
            and not (hold_out_test and split == "val" and holdout_of(s.identity) == "test")]
    by_id: dict[str, list[Sample]] = defaultdict(list)
    for s in side:
        by_id[s.identity].append(s)
    names = sorted(by_id)
    label = {n: i for i, n in enumerate(names)}
    clean_idx = np.array([s.index for s in side])
    clean_ident = np.array([label[s.identity] for s in side])
    clean_emb = teacher.embed(crops[clean_idx], progress=f"teacher clean {split}")

    multi = [s for s in side if len(by_id[s.identity]) >= 2]
    out_crops = np.empty((len(multi) * (k_degraded + int(clean)), 112, 112, 3), np.uint8)
    source, degraded, shrink = [], [], []
    j = 0
    for s in tqdm(multi, desc=f"degrade {split}"):
        img = np.asarray(crops[s.index])
        if clean:
            out_crops[j] = img
            source.append(s.index)
            degraded.append(False)
            shrink.append(1.0)
            j += 1
        for k in range(k_degraded):
            out_crops[j], how = random_degradation(
                img, seed_offset + seed * 7919 + s.index * 97 + k, kinds=kinds)
            source.append(s.index)
            degraded.append(True)
            shrink.append(how.size_factor())
            j += 1
    src = np.array(source)
    ident = np.array([label[samples[i].identity] for i in src])
    emb = teacher.embed(out_crops, progress=f"teacher degraded {split}")
    cr, ccs, nnccs = loo_certainty_ratio(emb, ident, src, clean_emb, clean_ident, clean_idx)
    marks = np.array([samples[i].landmarks for i in src], np.float32).reshape(-1, 5, 2)
    return DistillSet(out_crops, cr, ccs, nnccs, src, ident, np.array(degraded), marks,
                      np.array(shrink, np.float32))


def write_summary(path: Path, sets: dict[str, DistillSet], teacher: str, k: int,
                  excluded: str | None = None, hold_out_test: bool = False) -> None:
    summary = {
        "teacher": teacher, "k_degraded": k, "excluded_family": excluded,
        "hold_out_test": hold_out_test,
        **{name: {"samples": len(d.cr), "identities": len(np.unique(d.identity)),
                  "cr_mean": float(d.cr.mean()), "cr_std": float(d.cr.std())}
           for name, d in sets.items()},
    }
    path.write_text(json.dumps(summary, indent=1) + "\n")

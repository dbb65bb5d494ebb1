"""Certainty ratio (CR-FIQA): how classifiable a sample is, from embeddings and centres.

CR = CCS / (NNCCS + 1 + ε), with CCS the cosine similarity of a sample to its own
identity centre and NNCCS the largest cosine similarity to any other centre.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EPS = 1e-9


def identity_centres(emb: npt.NDArray[np.float32], labels: npt.NDArray[np.intp],
                     n_ids: int) -> npt.NDArray[np.float32]:
    """Mean embedding per identity, L2-normalised (n_ids × D)."""
    centres = np.zeros((n_ids, emb.shape[1]), np.float64)
    np.add.at(centres, labels, emb)
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an identity has no sample to build its centre from")
    return (centres / norms).astype(np.float32)


def certainty_ratio(emb: npt.NDArray[np.float32], labels: npt.NDArray[np.intp],
                    centres: npt.NDArray[np.float32], chunk: int = 4096
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                               npt.NDArray[np.float32]]:
    """(CR, CCS, NNCCS) per sample for L2-normalised ``emb`` and ``centres``."""
    n = len(emb)
    ccs = np.empty(n, np.float32)
    nnccs = np.empty(n, np.float32)
    for s in range(0, n, chunk):
        cos = emb[s : s + chunk] @ centres.T
        rows = np.arange(len(cos))
        own = labels[s : s + chunk]
        ccs[s : s + chunk] = cos[rows, own]
        cos[rows, own] = -np.inf
        nnccs[s : s + chunk] = cos.max(axis=1)
    cr = ccs / (nnccs + 1.0 + EPS)
    return cr.astype(np.float32), ccs, nnccs

"""Schema v1 of a published crop: the Redis entry's fields and the crop files' names.

Redis entry fields (all strings except ``crop``, the JPEG bytes):
``v, emit_id, stream_id, track_id, rank, reason, quality, quality_raw, det_score, ts_ms,
pts, frame_index, bbox, landmarks, crop, model``. The directory sink writes the same
fields as JSON beside each JPEG, named by :func:`crop_stem`.
"""

from __future__ import annotations

import json

import cv2

from stream_gate.types import Candidate, Emission, ImageBGR

SCHEMA_VERSION = "1"


def crop_stem(stream_id: str, track_id: int, tag: str) -> str:
    """The file name (without suffix) of a crop: stream, zero-padded track, then ``tag``
    (the emit id of an emitted crop, ``f`` + frame index of a scored one)."""
    return f"{stream_id}_t{track_id:06d}_{tag}"


def encode_jpeg(image: ImageBGR, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


def candidate_fields(c: Candidate) -> dict[str, str]:
    """The schema fields that describe the crop itself (shared by every sink)."""
    return {
        "stream_id": c.stream_id,
        "track_id": str(c.track_id),
        "quality": f"{c.quality:.2f}",
        "quality_raw": f"{c.quality_raw:.6f}",
        "det_score": f"{c.det_score:.4f}",
        "ts_ms": str(c.wall_ms),
        "pts": "" if c.pts is None else str(c.pts),
        "frame_index": str(c.frame_index),
        "bbox": json.dumps([round(float(v), 1) for v in c.box]),
        "landmarks": json.dumps([[round(float(x), 1), round(float(y), 1)] for x, y in c.landmarks]),
    }


def entry_fields(em: Emission) -> dict[str, str]:
    """Schema v1 fields of one emission, without the crop bytes."""
    fields = {
        "v": SCHEMA_VERSION,
        "emit_id": em.emit_id,
        **candidate_fields(em.candidate),
        "rank": str(em.rank),
        "reason": em.reason,
        "model": em.model,
    }
    if em.origin is not None:
        fields["owner"] = em.origin.owner
        fields["epoch"] = str(em.origin.epoch)
    return fields



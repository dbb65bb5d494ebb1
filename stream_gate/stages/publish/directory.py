"""The directory sink: one JPEG and one JSON per crop, for debugging, demos and tuning."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from stream_gate.errors import SinkError
from stream_gate.stages.publish.schema import (
    candidate_fields,
    crop_stem,
    encode_jpeg,
    entry_fields,
)
from stream_gate.types import Candidate, Emission, ImageBGR


class DirectorySink:
    """One JPEG and one JSON per crop, same file stem; for debugging, demos, tuning."""

    def __init__(self, root: Path, jpeg_quality: int = 95) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output directory {root}: {exc.strerror}") from None
        self.root = root
        self.jpeg_quality = jpeg_quality
        self.written = 0

    def write(self, stem: str, crop: ImageBGR, meta: dict[str, str]) -> None:
        (self.root / f"{stem}.jpg").write_bytes(encode_jpeg(crop, self.jpeg_quality))
        (self.root / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.written += 1

    def publish(self, emissions: Iterable[Emission]) -> None:
        for em in emissions:
            c = em.candidate
            self.write(crop_stem(c.stream_id, c.track_id, em.emit_id), c.crop, entry_fields(em))

    def write_scored(self, c: Candidate) -> None:
        """``--dump-scored``: every scored crop, emitted or not."""
        self.write(crop_stem(c.stream_id, c.track_id, f"f{c.frame_index:08d}"), c.crop,
                   candidate_fields(c))

    down = False  # a directory has no outage: a full disk raises at write
    backlog = 0

    def close(self) -> None:
        pass

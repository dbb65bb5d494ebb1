"""The directory sink: one JPEG and one JSON per crop, for debugging, demos and tuning."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from stream_gate.log import get_logger
from stream_gate.stages.publish.schema import (
    candidate_fields,
    crop_stem,
    encode_jpeg,
    entry_fields,
)
from stream_gate.stages.publish.spool import ensure_writable
from stream_gate.types import Candidate, Emission, ImageBGR

log = get_logger(__name__)


class DirectorySink:
    """One JPEG and one JSON per crop, same file stem; for debugging, demos, tuning.

    A folder that cannot be written is a start-up error (``what`` names its key); a write
    that fails later (a full disk) is logged once per spell and skipped: a debugging
    output never stops the gate.
    """

    def __init__(self, root: Path, jpeg_quality: int = 95, what: str = "output.dir") -> None:
        ensure_writable(root, what)
        self.root = root
        self.what = what
        self.jpeg_quality = jpeg_quality
        self.written = 0
        self.failed = 0  # crops not written since the last success

    def write(self, stem: str, crop: ImageBGR, meta: dict[str, str]) -> None:
        try:
            (self.root / f"{stem}.jpg").write_bytes(encode_jpeg(crop, self.jpeg_quality))
            (self.root / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
        except OSError as exc:
            (self.root / f"{stem}.jpg").unlink(missing_ok=True)  # no half pair
            self._refused(exc)
            return
        self._took()
        self.written += 1

    def append_line(self, name: str, record: dict[str, object]) -> None:
        """One JSON line appended to ``name`` in the folder (skipped, like a crop, when
        the disk refuses it)."""
        try:
            with open(self.root / name, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            self._refused(exc)
            return
        self._took()

    def _refused(self, exc: OSError) -> None:
        """A write the disk refused: logged at the first of a spell, counted."""
        if self.failed == 0:
            log.error("directory_write_failed", key=self.what, dir=str(self.root),
                      error=exc.strerror)
        self.failed += 1

    def _took(self) -> None:
        """A write went through: the end of a spell of refusals, if there was one."""
        if self.failed:
            log.info("directory_write_ok", key=self.what, dir=str(self.root),
                     skipped=self.failed)
            self.failed = 0

    def publish(self, emissions: Iterable[Emission]) -> None:
        for em in emissions:
            c = em.candidate
            self.write(crop_stem(c.stream_id, c.track_id, em.emit_id), c.crop, entry_fields(em))

    def write_scored(self, c: Candidate) -> None:
        """``--dump-scored``: every scored crop, emitted or not, with its media time ``t``
        and the quality model's signature where it gives one (so that ``stream-gate
        review`` can replay the selector: ``max_wait_s`` counts media time, the consensus
        compares signatures)."""
        fields = {**candidate_fields(c), "t": f"{c.t:.3f}"}
        if c.signature is not None:
            fields["signature"] = json.dumps([round(float(v), 5) for v in c.signature])
        self.write(crop_stem(c.stream_id, c.track_id, f"f{c.frame_index:08d}"), c.crop, fields)

    down = False  # a directory has no outage: a failed write is logged and skipped
    backlog = 0
    spool_error = None

    def close(self) -> None:
        pass

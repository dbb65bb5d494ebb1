"""A disk spool: Redis entries that could not be sent yet, kept in order across restarts.

One file per entry, named by a zero-padded sequence number so a directory listing is the
send order. Each file is written to a temporary name, fsync'd, then renamed (a crash
never leaves half an entry), and the directory is fsync'd. Format: 4-byte big-endian
length of a JSON header (key + string fields), the header, then the crop bytes.
When ``max_entries`` is reached the oldest entry is dropped and counted.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path

from stream_gate.errors import SinkError
from stream_gate.log import get_logger

log = get_logger(__name__)
Entry = tuple[str, dict[str, str | bytes]]
_SUFFIX = ".entry"


def ensure_writable(root: Path, what: str) -> None:
    """Create ``root`` and check a file can be written there; a SinkError naming the
    config key ``what`` otherwise (a start-up error, not a crash at the first crop)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SinkError(f"{what}: cannot write to {root}: {exc.strerror}") from None


class Spool:
    def __init__(self, root: Path, max_entries: int, what: str = "redis.spool_dir") -> None:
        ensure_writable(root, what)
        self.root = root
        self.max_entries = max_entries
        self.dropped = 0
        self.lock = threading.RLock()  # the publisher thread and a shutdown may both write
        fragments = sorted(root.glob("*.tmp"))  # a crash or a full disk mid-write
        for frag in fragments:
            frag.unlink(missing_ok=True)
        if fragments:
            log.warning("spool_fragments_removed", spool=str(root), files=len(fragments))
        self._files = sorted(root.glob(f"*{_SUFFIX}"))
        self._next = int(self._files[-1].stem) + 1 if self._files else 0

    def __len__(self) -> int:
        return len(self._files)

    def append(self, key: str, fields: dict[str, str | bytes]) -> None:
        """Keep one entry, after the others; raises OSError (disk full, read-only) with
        nothing written."""
        with self.lock:
            self._append(key, fields)

    def _append(self, key: str, fields: dict[str, str | bytes]) -> None:
        crop = fields.get("crop", b"")
        text = {k: v for k, v in fields.items() if k != "crop" and isinstance(v, str)}
        header = json.dumps({"key": key, "fields": text}).encode()
        blob = struct.pack(">I", len(header)) + header + (crop if isinstance(crop, bytes) else b"")
        path = self.root / f"{self._next:016d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no fragment left behind (a full disk, say)
            raise
        self._fsync_dir()
        self._next += 1
        self._files.append(path)
        while len(self._files) > self.max_entries:
            oldest = self._files.pop(0)
            oldest.unlink(missing_ok=True)
            self.dropped += 1
            log.error("spool_full_dropped_oldest", spool=str(self.root), dropped=self.dropped)

    def peek(self, n: int) -> list[tuple[Path, Entry]]:
        """Up to ``n`` oldest entries, in order, without removing them."""
        out = []
        for path in self._files[:n]:
            blob = path.read_bytes()
            (hlen,) = struct.unpack(">I", blob[:4])
            header = json.loads(blob[4 : 4 + hlen])
            fields: dict[str, str | bytes] = dict(header["fields"])
            fields["crop"] = blob[4 + hlen :]
            out.append((path, (header["key"], fields)))
        return out

    def remove(self, paths: list[Path]) -> None:
        """Forget entries that were sent (they are the oldest ones)."""
        with self.lock:
            self._remove(paths)

    def _remove(self, paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)
        gone = set(paths)
        self._files = [f for f in self._files if f not in gone]
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

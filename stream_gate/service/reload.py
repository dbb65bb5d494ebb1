"""Live tuning: reload the config file on SIGHUP or when it changes on disk.

The new file is validated first; an invalid one is rejected with the reason and the
settings in force stay. Only thresholds and policies (``score``, ``select`` and the
per-stream overrides) are applied live.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_gate.config import Settings, check_runnable, load_settings
from stream_gate.errors import ConfigError
from stream_gate.log import get_logger, redact_url

log = get_logger(__name__)


class ConfigReloader:
    """Call :meth:`poll` often (from the processing thread); it applies changes."""

    def __init__(self, path: Path, apply: Callable[[Settings], None],
                 check_every_s: float = 1.0, requested: bool = False) -> None:
        """``requested``: a SIGHUP came while the process was starting."""
        self.path = path
        self._apply = apply
        self._check_every = check_every_s
        self._requested = requested
        self._next_check = 0.0
        self._mtime = self._stat()
        signal.signal(signal.SIGHUP, self._on_sighup)

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def _on_sighup(self, _signum: int, _frame: Any) -> None:
        self._requested = True

    def poll(self) -> None:
        now = time.monotonic()
        if not self._requested and now < self._next_check:
            return
        self._next_check = now + self._check_every
        mtime = self._stat()
        if not self._requested and mtime == self._mtime:
            return
        reason = "sighup" if self._requested else "file_changed"
        content = self._read_whole()
        if content is None:
            return  # being rewritten: the next poll reads it again
        self._requested = False
        self._mtime = mtime
        try:
            settings = load_settings(self.path, content=content)
            check_runnable(settings)
        except ConfigError as exc:
            log.error("config_rejected", path=str(self.path), trigger=reason,
                      error=redact_url(str(exc).replace("\n", "; ")))
            return
        try:
            self._apply(settings)
        except Exception as exc:  # a reload must never end the process
            log.error("config_apply_failed", path=str(self.path), trigger=reason,
                      error=redact_url(f"{type(exc).__name__}: {exc}"))
            return
        log.info("config_reloaded", path=str(self.path), trigger=reason)

    def _read_whole(self) -> bytes | None:
        """The file's bytes if it is not being written right now: the same size and mtime
        before and after reading, and not empty (an editor's truncate-then-write)."""
        try:
            before = self.path.stat()
            content = self.path.read_bytes()
            after = self.path.stat()
        except OSError:
            return b""  # gone or unreadable: load_settings says why
        if not content or (before.st_size, before.st_mtime_ns) != (after.st_size,
                                                                   after.st_mtime_ns):
            return None
        return content

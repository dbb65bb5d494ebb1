"""Logging: structlog, console output in a terminal and JSON lines otherwise.

Events are state changes (stream up/down, track emitted), never one per frame.
Camera credentials are removed from anything logged with :func:`redact_url`.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/@\s]+@", re.IGNORECASE)


def redact_url(text: str) -> str:
    """Replace ``user:password@`` in any URL inside ``text`` by ``***@``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


class _Stderr:
    """``sys.stderr`` as it is at each write, not at set-up (embedding programs and test
    runners swap it; a stream captured at set-up may be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog once for the process; ``json=None`` picks by terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

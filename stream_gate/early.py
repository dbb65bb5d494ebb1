"""A SIGHUP that came while ``stream-gate run`` was still starting (imports, models).

Set by the handler the CLI installs before its heavy imports; the config reloader
applies it once it listens. Imports nothing, so that it can be installed first.
"""

from __future__ import annotations

import threading
from typing import Any

HUP = threading.Event()


def note_hup(_signum: int, _frame: Any) -> None:
    HUP.set()

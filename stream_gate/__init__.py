"""stream-gate: a face quality gate for live video.

Frames flow one way: decode -> batch -> detect -> track -> align -> score -> select ->
publish. Each stage lives in its own module and talks to the next through the typed
dataclasses in :mod:`stream_gate.types`.
"""

__version__ = "0.1.0"

"""Placement: which of the configured streams this process runs (cluster mode).

Without a placement a process runs every stream of its config. With one (the cluster
member of service/cluster.py), every worker reads the same file and runs only the streams
it holds a lease on; the loop asks :meth:`Placement.leases` once per turn and starts or
stops streams to match, then says what runs (and each reader's state) with
:meth:`Placement.running`, so a lease is given up only after its camera stopped and its
tracks were flushed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from stream_gate.types import Emission, Origin


class Placement(Protocol):
    def configure(self, stream_ids: Sequence[str]) -> None:
        """The streams of the config (at start and after every hot reload)."""

    def leases(self) -> Mapping[str, Origin]:
        """The streams this process may run now, each with the lease it holds."""

    def running(self, states: Mapping[str, str]) -> None:
        """The streams that run now with their readers' states (every turn)."""

    def holds(self, em: Emission) -> bool:
        """``em`` was made under a lease this process surely still holds."""

    def ready(self) -> bool:
        """This process is a member of its group now (readiness)."""

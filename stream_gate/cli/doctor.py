"""``stream-gate doctor``: check a config's cameras, models, Redis and spool."""

from __future__ import annotations

import argparse

from stream_gate.service.doctor import checks


def cmd_doctor(args: argparse.Namespace) -> int:
    failed = 0
    for check in checks(args.config):
        print(check.line(), flush=True)
        failed += not check.ok
    print(f"\n{'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0

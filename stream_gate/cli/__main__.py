"""``python -m stream_gate.cli``: the same as the ``stream-gate`` command."""

import sys

from stream_gate.cli import main

sys.exit(main())

"""Batch buckets and CUDA graphs for the torch engine on a GPU.

Measured on an H100 (PyTorch 2.11, fp16): the first call of a network on an input shape
it has not seen costs 0.3–1.7 s (cuDNN builds its plans for every convolution), and the
pipeline's batches come in every size (1..32 frames, 1..hundreds of faces), so a live
run spent most of its time there. :func:`run_bucketed` pads each batch up to a power of
two and splits larger ones into chunks of 64, so a model meets at most seven batch sizes,
all of which it can meet before the first frame (TorchModel.warm). And at small batches
a network of a hundred small kernels is bound by their launch cost from Python (the
quality model took 1.6 ms eager against 0.5 ms replayed, at 32 faces):
:class:`GraphRunner` captures one CUDA graph per shape and replays it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import torch

log = structlog.get_logger(__name__)

Tensor = torch.Tensor
MAX_BATCH = 64  # larger batches run in chunks of this size: no shape beyond it, ever


def bucket(n: int) -> int:
    """The batch size ``n`` (1..MAX_BATCH) items are padded to: the next power of two."""
    return 1 << (max(n, 1) - 1).bit_length()


def buckets_up_to(n: int) -> list[int]:
    """Every bucket size a batch of 1..n items can be padded to (or chunked into)."""
    return sorted({bucket(k) for k in range(1, min(max(n, 1), MAX_BATCH) + 1)})


def pad_batch(x: Tensor) -> Tensor:
    """``x`` (at most MAX_BATCH items) with zero items appended up to :func:`bucket`."""
    n = x.shape[0]
    size = bucket(n)
    if size == n:
        return x
    return torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])


def run_bucketed(run: Callable[[Tensor], list[Tensor]], x: Tensor) -> list[Tensor]:
    """``run`` on ``x`` in chunks of at most MAX_BATCH items, each padded to its bucket;
    the outputs of the ``len(x)`` real items."""
    n = x.shape[0]
    parts = [run(pad_batch(x[i:i + MAX_BATCH])) for i in range(0, n, MAX_BATCH)]
    if len(parts) == 1:
        return [o[:n] for o in parts[0]]
    return [torch.cat([p[k] for p in parts])[:n] for k in range(len(parts[0]))]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inp: Tensor
    out: list[Tensor]


class GraphRunner:
    """Runs ``fn`` (device tensor in, device tensors out) as one CUDA graph per input
    shape and dtype: captured on first sight, replayed after. A shape whose capture
    fails runs eagerly from then on (logged once)."""

    def __init__(self, fn: Callable[[Tensor], list[Tensor]], name: str) -> None:
        self.fn = fn
        self.name = name
        self.graphs: dict[tuple[object, ...], _Captured | None] = {}
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool for all shapes
        self.lock = threading.Lock()  # the captured input/output buffers are shared

    def __call__(self, x: Tensor) -> list[Tensor]:
        key = (tuple(x.shape), x.dtype)
        with self.lock:
            if key not in self.graphs:
                self.graphs[key] = self._capture(x)
            captured = self.graphs[key]
            if captured is None:
                return self.fn(x)
            captured.inp.copy_(x)
            captured.graph.replay()
            # Copies, enqueued on the same stream: the next replay may overwrite ``out``.
            return [o.clone() for o in captured.out]

    def _capture(self, x: Tensor) -> _Captured | None:
        inp = x.clone()
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(2):  # cuDNN picks and builds its kernels outside the capture
                    self.fn(inp)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the pipeline's other threads may use CUDA meanwhile.
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                out = self.fn(inp)
        except RuntimeError as exc:
            torch.cuda.synchronize()
            log.warning("cuda_graph_capture_failed", model=self.name, shape=list(x.shape),
                        error=str(exc).splitlines()[0], fallback="eager")
            return None
        log.debug("cuda_graph_captured", model=self.name, shape=list(x.shape))
        return _Captured(graph, inp, out)

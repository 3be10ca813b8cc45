"""Wall time spent inside tnc's compiled kernels (for the benches' 'kernels' share)."""
from __future__ import annotations

import time

from tnc.engine import kernels


class KernelClock:
    """Wall seconds spent inside ``tnc.engine.kernels.mode_product`` while installed (every
    kernel entry point, streams.py's included, goes through it)."""

    def __init__(self):
        self.seconds, self.original = 0.0, kernels.mode_product

    def __enter__(self):
        def timed(*args, **kw):
            start = time.perf_counter()
            try:
                return self.original(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - start
        kernels.mode_product = timed
        return self

    def __exit__(self, *exc):
        kernels.mode_product = self.original

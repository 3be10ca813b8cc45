"""Progress reporting for long fits: a bar that can be switched off, and a callback.

Library code never prints; it reports each sweep here::

    >>> with Progress(total=3, desc="als", enabled=False) as bar:
    ...     for sweep in range(3):
    ...         bar.update(loss=1.0 / (sweep + 1))
"""
from __future__ import annotations


class Progress:
    """A tqdm bar when tqdm is installed and ``enabled``; otherwise silent."""

    def __init__(self, total: int, desc: str = "fit", enabled: bool = True):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, **postfix) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def wants_stop(callback, state: dict) -> bool:
    """Call the user's ``callback(state)``; a True return asks the fit to stop.

    ``state``: the iteration's history record (``iteration`` from 1, ``loss``,
    ``rel_error``, ``time``, the method's own keys; :mod:`tnc.fitting.records`),
    where the old keys (``sweep``, ``epoch``) still read, plus ``tensors`` where
    the method has them.
    """
    if callback is None:
        return False
    from tnc.fitting.records import Record
    return bool(callback(Record(state)))

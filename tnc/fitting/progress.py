"""Progress reporting for long fits: a bar that can be switched off, and a callback.

Library code never prints; it reports each sweep here::

    >>> with Progress(total=3, desc="als", enabled=False) as bar:
    ...     for sweep in range(3):
    ...         bar.update(loss=1.0 / (sweep + 1))
"""
from __future__ import annotations


class Progress:
    """A tqdm bar when tqdm is installed and ``enabled``; otherwise silent.

    ``position``: the bar's line (0 the first), for a bar drawn under another, as
    :meth:`inner` makes.
    """

    def __init__(self, total: int, desc: str = "fit", enabled: bool = True, position: int = 0):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                                position=position)

    def inner(self, total: int, desc: str) -> "Progress":
        """A second bar under this one (shown when this one is), for the steps of one
        outer step, e.g. the blocks of one pass over the data; :meth:`restart` it per step.

            >>> with Progress(3, enabled=False) as bar, bar.inner(4, "blocks") as blocks:
            ...     blocks.restart()
            ...     blocks.update()
        """
        return Progress(total, desc, enabled=self.bar is not None, position=1)

    def restart(self) -> None:
        """Start the bar again from 0 (the next outer step)."""
        if self.bar is not None:
            self.bar.reset()

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

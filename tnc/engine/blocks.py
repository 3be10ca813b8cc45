"""Dense data bigger than memory, read in blocks of rows along one axis.

A :class:`BlockSource` wraps an out-of-core array (an ``np.memmap``, a zarr array, an
h5py dataset or a dask array) without reading it; :meth:`BlockSource.layout` cuts one
axis into blocks that fit the memory budget and never split a chunk of the storage;
:func:`run_blocks` applies a function to each block, here or on an executor (a
``concurrent.futures`` executor reads the blocks in its workers; a
``dask.distributed.Client`` computes a dask array's blocks on its workers, so only the
function's results travel)::

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(24.0).reshape(4, 3, 2))
    >>> source = BlockSource(np.load(path, mmap_mode="r"))
    >>> source.kind, source.layout(0, rows=3)
    ('memmap', [(0, 3), (3, 4)])
    >>> run_blocks(source, source.layout(0, rows=3), lambda block, start, stop: float(block.sum()))
    [153.0, 123.0]
"""
from __future__ import annotations

import math
import mmap

import numpy as np

from tnc.engine.plan import check_allocation, format_bytes, limit_bytes
from tnc.errors import MemoryLimitError, TncError

BLOCK_BYTES_CAP = 256 * 2 ** 20   # a block's float64 copy holds at most this many bytes
BUDGET_SHARE = 4                  # ... and at most this share of the memory budget
KINDS = ("memmap", "zarr", "h5py", "dask")


def out_of_core_kind(data) -> str | None:
    """``"memmap"``, ``"zarr"``, ``"h5py"`` or ``"dask"`` for the array kinds that stream,
    else None; a zarr group or an h5py file or group (not one array) is refused by name.

    Read off the type's module, so no optional package is imported here.

        >>> out_of_core_kind(np.zeros(2)) is None
        True
    """
    if isinstance(data, np.memmap):
        return "memmap"
    package, name = type(data).__module__.split(".")[0], type(data).__name__
    if package in ("zarr", "h5py", "dask") and name in ("Array", "Dataset"):
        return package
    if package == "zarr" and name == "Group" or package == "h5py" and name in ("File", "Group"):
        members = ", ".join(sorted(data.keys())) or "none"
        raise TncError(f"the data is a {package} {name.lower()}, not an array: pick one of its "
                       f"arrays (members: {members}), e.g. data['{next(iter(data.keys()), 'x')}']")
    return None


class BlockSource:
    """An out-of-core array read block by block along axis 0 (or another axis), each
    block a float32 (data stored as float32) or float64 numpy array times ``scale``.

    ``data``: an ``np.memmap``, a zarr array, an h5py dataset or a dask array.
    """

    def __init__(self, data, scale: float = 1.0):
        kind = out_of_core_kind(data)
        if kind is None:
            raise TncError(f"cannot stream data of type {type(data).__module__}."
                           f"{type(data).__name__}; out-of-core data must be one of an "
                           "np.memmap, a zarr array, an h5py dataset or a dask array")
        dtype = np.dtype(data.dtype)
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise TncError(f"the {kind} data must be real numeric, got dtype {dtype}")
        self.data, self.kind, self.scale = data, kind, scale
        self.shape = tuple(int(n) for n in data.shape)
        self.itemsize = dtype.itemsize
        self.dtype = np.dtype(np.float32 if dtype == np.float32 else np.float64)   # of blocks

    def __getstate__(self) -> dict:
        """A whole memory-mapped file travels to a process pool's workers as its name and
        layout (reopened there), not as its contents."""
        state = dict(self.__dict__)
        if self.kind == "memmap" and _direct_file(self.data):
            data = self.data
            state["data"] = ("file", data.filename, data.dtype.str, data.offset, data.shape)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["data"], tuple):
            _, filename, dtype, offset, shape = state["data"]
            state["data"] = np.memmap(filename, dtype=dtype, mode="r", offset=offset,
                                      shape=shape)
        self.__dict__.update(state)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def chunks(self, axis: int) -> tuple[int, ...] | None:
        """The storage's chunk lengths along ``axis`` (None when not chunked)."""
        if self.kind == "dask":
            return tuple(int(c) for c in self.data.chunks[axis])
        if self.kind in ("zarr", "h5py") and self.data.chunks is not None:
            step, n = int(self.data.chunks[axis]), self.shape[axis]
            return tuple(min(step, n - k) for k in range(0, n, step))
        return None

    def layout(self, axis: int = 0, rows: int | None = None, memory_limit="auto",
               row_factor: float = 3.0, strict: bool = True) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` along ``axis``: blocks of at most ``rows`` rows (default:
        as many as fit the budget, ``row_factor`` float64 copies of a row each, see
        :func:`block_rows`), joined from whole chunks of the storage; a chunk longer
        than a block is refused by name (the storage would be read whole per block),
        or split when not ``strict`` (a one-off pass)."""
        rows = rows or block_rows(self.size // self.shape[axis], memory_limit, row_factor,
                                  f"a row along axis {axis} of the {self.kind} data")
        chunks = self.chunks(axis) or (1,) * self.shape[axis]
        if not strict:
            chunks = (1,) * self.shape[axis]
        if max(chunks) > rows:
            raise TncError(f"the {self.kind} data's chunks along axis {axis} hold up to "
                           f"{max(chunks)} rows (chunks {_short(chunks)}) but a block under "
                           f"memory_limit holds at most {rows}; rechunk the data to at most "
                           f"{rows} along axis {axis} (dask: data.rechunk({{{axis}: {rows}}})) "
                           "or raise memory_limit")
        blocks, start, stop = [], 0, 0
        for length in chunks:
            if stop + length - start > rows:
                blocks.append((start, stop))
                start = stop
            stop += length
        blocks.append((start, stop))
        return blocks

    def load(self, why: str, memory_limit="auto") -> np.ndarray:
        """The whole array in memory (for a fit that cannot stream, ``why``), after
        checking it fits ``memory_limit``."""
        check_allocation(self.dtype.itemsize * self.size, f"loading the {self.kind} data of "
                         f"shape {self.shape} whole ({why})", memory_limit)
        return np.concatenate([self.read(a, b) for a, b in
                               self.layout(0, memory_limit=None, strict=False)])

    def raw(self, start: int, stop: int, axis: int = 0):
        """Rows ``start:stop`` along ``axis`` as stored (a dask array stays lazy)."""
        index = (slice(None),) * axis + (slice(start, stop),)
        if self.kind == "memmap":
            return np.asarray(self.data[index])      # a view of the mapped file: no copy
        return self.data[index]

    def release(self, start: int, stop: int, axis: int = 0) -> None:
        """Unmap the pages of rows ``start:stop`` of a memory-mapped file from this process
        (they stay in the page cache): read block after block, a mapped file would
        otherwise count whole in the process's resident memory."""
        if self.kind != "memmap" or axis != 0 or not _direct_file(self.data):
            return
        row = self.itemsize * math.prod(self.shape[1:])
        mapped = self.data._mmap            # numpy maps from the offset's granule
        first = self.data.offset % mmap.ALLOCATIONGRANULARITY + start * row
        aligned = first - first % mmap.PAGESIZE
        mapped.madvise(mmap.MADV_DONTNEED, aligned, first - aligned + (stop - start) * row)

    def read(self, start: int, stop: int, axis: int = 0, buffers=None) -> np.ndarray:
        """Rows ``start:stop`` along ``axis`` as a float array times ``scale`` (written
        into ``buffers``, a :class:`Buffers` reused block after block, when given).
        Finiteness is checked once, by the first pass of a fit (:func:`check_finite`)."""
        raw = self.raw(start, stop, axis)
        if self.kind == "dask":
            raw = raw.compute()
        return as_block(raw, self.scale, buffers)


class MaskSource(BlockSource):
    """A boolean mask (True: observed) read in the same blocks as the data it goes with:
    an out-of-core array of any of :data:`KINDS` or an in-memory numpy array.

        >>> MaskSource(np.ones((2, 3), bool), (2, 3)).read(0, 1)
        array([[ True,  True,  True]])
    """

    def __init__(self, mask, shape: tuple):
        kind = out_of_core_kind(mask)
        if kind is None:
            if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
                mask = np.asarray(mask)
            kind = "array"
        self.data, self.kind, self.scale = mask, kind, 1.0
        self.shape = tuple(int(n) for n in mask.shape)
        if self.shape != tuple(shape):
            raise TncError(f"the mask has shape {self.shape} but the data has shape "
                           f"{tuple(shape)}")
        self.itemsize, self.dtype = np.dtype(mask.dtype).itemsize, np.dtype(bool)

    def raw(self, start: int, stop: int, axis: int = 0):
        if self.kind == "array":
            return self.data[(slice(None),) * axis + (slice(start, stop),)]
        return super().raw(start, stop, axis)

    def read(self, start: int, stop: int, axis: int = 0, buffers=None) -> np.ndarray:
        raw = self.raw(start, stop, axis)
        if self.kind == "dask":
            raw = raw.compute()
        return np.asarray(raw).astype(bool, copy=False)


class NanMask(MaskSource):
    """``mask="nan"`` for out-of-core data: observed where the data are not NaN, read
    from the data's own blocks (the rows are read twice; a stored mask reads once).

        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.array([[1.0, np.nan]]))
        >>> NanMask(BlockSource(np.load(path, mmap_mode="r"))).read(0, 1)
        array([[ True, False]])
    """

    def __init__(self, source: BlockSource):
        self.data, self.kind, self.scale, self.shape = source, "nan", 1.0, source.shape
        self.itemsize, self.dtype = 1, np.dtype(bool)

    def raw(self, start: int, stop: int, axis: int = 0):
        return ~np.isnan(self.data.raw(start, stop, axis))    # a dask array stays lazy

    def release(self, start: int, stop: int, axis: int = 0) -> None:
        """Release the data's rows (also when the mask is read alone, as GCP's start does)."""
        self.data.release(start, stop, axis)


def mask_source(mask, source: BlockSource) -> MaskSource:
    """The mask of out-of-core ``source`` read in its blocks: a :class:`MaskSource` of a
    boolean array (numpy or out-of-core), or :class:`NanMask` for ``mask="nan"``."""
    if isinstance(mask, str):
        if mask != "nan":
            raise TncError(f"mask must be a boolean array or 'nan', got {mask!r}")
        return NanMask(source)
    return MaskSource(mask, source.shape)


class Buffers:
    """Reusable flat arrays, one per name, grown as needed: block after block the same
    memory, so no fresh pages are faulted in per block."""

    def __init__(self):
        self.arrays: dict = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        size, have = math.prod(shape), self.arrays.get(name)
        if have is None or have.size < size or have.dtype != dtype:
            have = self.arrays[name] = np.empty(size, dtype)
        return have[:size].reshape(shape)


def block_rows(row_elements: int, memory_limit="auto", row_factor: float = 3.0,
               what: str = "a row of the data") -> int:
    """Rows per block: ``row_factor`` float64 copies of a block of ``row_elements``-entry
    rows stay within ``1 / BUDGET_SHARE`` of ``memory_limit`` and ``BLOCK_BYTES_CAP``.

        >>> block_rows(1000, memory_limit=4 * 8 * 24000)     # 24 kB a row, 192 kB a block
        8
    """
    limit = limit_bytes(memory_limit)
    budget = BLOCK_BYTES_CAP * row_factor if limit is None else min(
        limit / BUDGET_SHARE, BLOCK_BYTES_CAP * row_factor)
    row_bytes = 8 * row_elements * row_factor
    if row_bytes > (limit if limit is not None else math.inf):
        raise MemoryLimitError(f"{what} needs {format_bytes(row_bytes)} in memory but the "
                               f"memory limit is {format_bytes(limit)}; raise memory_limit")
    return max(1, int(budget // row_bytes))


def as_block(raw, scale: float, buffers: Buffers | None = None) -> np.ndarray:
    """``raw`` times ``scale`` as float32 when stored so, else float64 (into ``buffers``
    when given): float32 data stream as float32 blocks, half the bytes to read and multiply
    (:mod:`tnc.fitting.streamed` sums their products in float64)."""
    raw = np.asarray(raw)
    dtype = np.float32 if raw.dtype == np.float32 else np.float64
    if buffers is None:
        block = raw.astype(dtype, copy=False)
        return block * dtype(scale) if scale != 1.0 else block
    block = buffers.get("block", raw.shape, dtype)
    if scale != 1.0:
        np.multiply(raw, dtype(scale), out=block)
    elif raw.dtype == dtype:
        return raw
    else:
        np.copyto(block, raw)
    return block


def observed(block, mask):
    """``block`` with its unobserved entries (``mask`` False; they may hold NaN) zeroed, in
    its dtype: what an in-memory fit sees (:func:`tnc.fitting.front.split_missing`).

        >>> observed(np.array([1.0, np.nan], np.float32), np.array([True, False]))
        array([1., 0.], dtype=float32)
    """
    return np.where(mask, block, block.dtype.type(0))


def check_finite(block, start: int, stop: int, axis: int = 0, mask=None) -> None:
    """Refuse a block with NaN or infinite entries (observed ones, with ``mask``: True where
    observed), naming its rows."""
    finite = np.isfinite(block)
    if mask is not None:
        finite |= ~mask
    if not finite.all():
        bad = block.size - int(np.count_nonzero(finite))
        what = "observed entries" if mask is not None else "entries"
        raise TncError(f"the data has {bad} NaN or infinite {what} in rows {start}:{stop} "
                       f"along axis {axis}; give a mask (True = observed) or mask='nan' "
                       "that hides them")


def _direct_file(data: np.memmap) -> bool:
    """Whether ``data`` is a whole C-ordered ``np.memmap`` of a file (not a view), whose
    rows lie at known places of its mapping."""
    return (isinstance(data.base, mmap.mmap) and data.flags.c_contiguous
            and isinstance(getattr(data, "_mmap", None), mmap.mmap)
            and data.mode != "c" and hasattr(mmap, "MADV_DONTNEED"))   # "c": private pages


def _short(chunks) -> str:
    text = ", ".join(map(str, chunks[:6]))
    return f"({text}{', ...' if len(chunks) > 6 else ''})"


# -- running a function on every block ------------------------------------------------------
def run_blocks(source: BlockSource, blocks, task, *args, axis: int = 0, executor=None,
               on_block=None, mask: MaskSource | None = None):
    """``[task(block, start, stop, *args) for each (start, stop) of blocks]``, in order
    (``block``: rows ``start:stop`` along ``axis``, read by :meth:`BlockSource.read`).

    ``executor``: None (here, one block in memory at a time), a
    ``dask.distributed.Client`` (a dask array's blocks computed and ``task`` run on the
    workers) or any object with ``submit`` (a ``concurrent.futures`` executor; its
    workers read the blocks). ``on_block()`` is called as each block is done (a
    progress bar). ``mask``: a :class:`MaskSource` read in the same blocks, given to
    ``task`` as ``mask=`` (its rows ``start:stop``). A block that fails on the executor
    (an exception, a worker lost) raises a :class:`TncError` naming the block and the
    failure.
    """
    tick = on_block or (lambda: None)
    if executor is None:
        results, buffers = [], Buffers()
        for start, stop in blocks:
            results.append(_on_source(source, start, stop, axis, task, args, mask, buffers))
            tick()
        return results
    if _is_dask_client(executor) and source.kind == "dask":
        import dask
        futures = executor.compute([dask.delayed(_on_raw)(
            source.raw(a, b, axis), source.scale, a, b, axis, task, args,
            None if mask is None else mask.raw(a, b, axis)) for a, b in blocks])
    else:
        futures = [executor.submit(_on_source, source, a, b, axis, task, args, mask)
                   for a, b in blocks]
    return [_result(future, block, executor, tick) for future, block in zip(futures, blocks)]


def _on_raw(raw, scale, start, stop, axis, task, args, mask=None):
    extra = {} if mask is None else {"mask": np.asarray(mask).astype(bool, copy=False)}
    return task(as_block(raw, scale), start, stop, *args, **extra)


def _on_source(source, start, stop, axis, task, args, mask=None, buffers=None):
    """``task`` on one block read here (and its mask's rows), the block released after."""
    try:
        extra = {} if mask is None else {"mask": mask.read(start, stop, axis)}
        return task(source.read(start, stop, axis, buffers), start, stop, *args, **extra)
    finally:
        source.release(start, stop, axis)
        if mask is not None:
            mask.release(start, stop, axis)


def _result(future, block, executor, tick):
    try:
        value = future.result()
    except TncError:
        raise
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        raise TncError(f"block rows {block[0]}:{block[1]} failed on the executor "
                       f"({type(executor).__name__}): {type(error).__name__}: {error}; the fit "
                       "stopped and nothing was saved") from error
    tick()
    return value


def _is_dask_client(executor) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(
        executor, "compute")

"""MPO data tensors for spin-1/2 chains, shaped for the ``energy`` network's ``H[n]``.

An MPO is written as an operator-valued matrix ``W[a, b]`` (a 2x2 operator per
entry) that is the same on every site; the chain's Hamiltonian is the product
``start . W . W ... W . end`` with ``start`` picking the last row and ``end``
the first column (lower-triangular convention)::

    H[1](p, q, w[1])  = W[last, :]          H[n](w[n-1], p, q, w[n]) = W
    H[N](w[N-1], p, q) = W[:, 0]

so each ``H[n]`` is a data tensor of ``tnc.library("energy", N=L, W=...)``.

    >>> import numpy as np, tnc
    >>> h = heisenberg_mpo(2)
    >>> net = tnc.library("energy", N=2, D=2, W=5)
    >>> h["H[1]"].shape, h["H[2]"].shape
    ((2, 2, 5), (5, 2, 2))
    >>> np.round(np.linalg.eigvalsh(dense_hamiltonian(h)), 3)     # singlet, triplet
    array([-0.75,  0.25,  0.25,  0.25])
"""
from __future__ import annotations

import numpy as np

from tnc.errors import TncError

SX = np.array([[0.0, 0.5], [0.5, 0.0]])
SZ = np.array([[0.5, 0.0], [0.0, -0.5]])
SPLUS = np.array([[0.0, 1.0], [0.0, 0.0]])
SMINUS = SPLUS.T
IDENTITY = np.eye(2)
PAULI_X = 2 * SX
PAULI_Y = np.array([[0.0, -1.0j], [1.0j, 0.0]])


def _operator_matrix(entries: dict, size: int) -> np.ndarray:
    """``W[a, p, q, b]`` from ``{(a, b): 2x2 operator}`` (zero elsewhere); complex when
    an operator is."""
    w = np.zeros((size, 2, 2, size), dtype=np.result_type(float, *entries.values()))
    for (a, b), op in entries.items():
        w[a, :, :, b] = op
    return w


def mpo_tensors(bulk: np.ndarray, length: int, name: str = "H") -> dict[str, np.ndarray]:
    """Data tensors ``H[1..L]`` of a uniform MPO with bulk tensor ``bulk[a, p, q, b]``.

    The first site keeps row ``a = last`` (legs ``p, q, w``), the last site
    keeps column ``b = 0`` (legs ``w, p, q``), matching ``H[n](w[n-1]?, p[n], q[n], w[n]?)``.
    """
    if length < 2:
        raise TncError(f"an MPO chain needs at least 2 sites, got L={length}")
    tensors = {f"{name}[{n}]": bulk for n in range(2, length)}
    tensors[f"{name}[1]"] = bulk[-1]
    tensors[f"{name}[{length}]"] = bulk[..., 0]
    return {f"{name}[{n}]": np.array(tensors[f"{name}[{n}]"]) for n in range(1, length + 1)}


def heisenberg_mpo(L: int, J: float = 1.0, h: float = 0.0) -> dict[str, np.ndarray]:
    """``H = J sum_i S_i . S_{i+1} - h sum_i S^z_i`` (spin-1/2 operators, open chain).

    Returns the data tensors of ``tnc.library("energy", N=L, W=5)``.
    """
    return mpo_tensors(_operator_matrix({
        (0, 0): IDENTITY, (4, 4): IDENTITY,
        (4, 1): SPLUS, (1, 0): 0.5 * J * SMINUS,
        (4, 2): SMINUS, (2, 0): 0.5 * J * SPLUS,
        (4, 3): SZ, (3, 0): J * SZ,
        (4, 0): -h * SZ}, 5), L)


def ising_mpo(L: int, h: float = 1.0, J: float = 1.0) -> dict[str, np.ndarray]:
    """Transverse-field Ising chain ``H = -J sum_i Z_i Z_{i+1} - h sum_i X_i`` (Pauli matrices).

    Returns the data tensors of ``tnc.library("energy", N=L, W=3)``.
    """
    return mpo_tensors(_operator_matrix({
        (0, 0): IDENTITY, (2, 2): IDENTITY,
        (2, 1): 2 * SZ, (1, 0): -J * 2 * SZ,
        (2, 0): -h * 2 * SX}, 3), L)


def xy_dm_mpo(L: int, J: float = 1.0, D: float = 0.5) -> dict[str, np.ndarray]:
    """XY chain with a Dzyaloshinskii-Moriya term (Pauli matrices, open chain)::

        H = sum_i J (X_i X_{i+1} + Y_i Y_{i+1}) + D (X_i Y_{i+1} - Y_i X_{i+1})

    a complex Hermitian Hamiltonian (``Y`` is imaginary; each term is a product of
    Hermitian operators on two sites, so H = Hᴴ) whose ground state is complex for
    ``D != 0``. Written as ``X_i (J X + D Y)_{i+1} + Y_i (J Y - D X)_{i+1}``: complex
    data tensors of ``tnc.library("energy", N=L, W=4)``.

    >>> h = dense_hamiltonian(xy_dm_mpo(4))
    >>> h.dtype, bool(np.allclose(h, h.conj().T)), bool(np.abs(h.imag).max() > 0)
    (dtype('complex128'), True, True)
    """
    return mpo_tensors(_operator_matrix({
        (0, 0): IDENTITY, (3, 3): IDENTITY,
        (3, 1): PAULI_X, (1, 0): J * PAULI_X + D * PAULI_Y,
        (3, 2): PAULI_Y, (2, 0): J * PAULI_Y - D * PAULI_X}, 4), L)


def dense_hamiltonian(tensors: dict[str, np.ndarray], name: str = "H") -> np.ndarray:
    """The ``2^L x 2^L`` matrix of an MPO (for checks on short chains), rows = ket legs ``p``."""
    length = len(tensors)
    m = tensors[f"{name}[1]"]                       # (rows, cols, w), rows = 2
    for n in range(2, length + 1):
        m = np.tensordot(m, tensors[f"{name}[{n}]"], axes=(-1, 0))  # (r, c, p, q[, w])
        r = m.shape[0] * 2
        m = np.moveaxis(m, 2, 1).reshape((r, r) + m.shape[4:])
    return m

"""tnc: a tensor-network expression compiler.

Write a network in the tnc language, compile it, contract it::

    >>> import tnc
    >>> net = tnc.library("tt", N=4, d=2, r=3)
    >>> net.contract(net.random()).shape
    (2, 2, 2, 2)
"""
import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it. Loaded on first use, so that
# ``import tnc`` stays light (numpy, scipy, networkx and lark load when needed).
_PUBLIC = {
    "tnc.lang.compiler": ["compile", "compile_all", "library", "library_names"],
    "tnc.lang.einsum_text": ["from_einsum"],
    "tnc.errors": ["MemoryLimitError", "TensorError", "TncError", "TncSemanticError",
                   "TncSyntaxError"],
    "tnc.fitting.front": ["fit", "fit_options", "register_method"],
    "tnc.fitting.losses": ["Loss", "get_loss", "register_loss"],
    "tnc.engine.network": ["Network"],
    "tnc.fitting.result": ["FitResult", "load_result"],
    "tnc.fitting.records": ["load"],
    "tnc.fitting.decompositions": ["decompose", "tt_round"],
    "tnc.mps.tt": ["TensorTrain", "TTMatrix"],
    "tnc.mps.cross": ["CrossResult", "tt_cross"],
    "tnc.engine.sparse": ["SparseTensor"],
    "tnc.engine.plan": ["Cost"],
    "tnc.mps.mpo": ["heisenberg_mpo", "ising_mpo", "xy_dm_mpo"],
    "tnc.mps.dmrg": ["ground_state"],
    "tnc.models.stratified": ["StratifiedResult", "ntf", "stratified_ntf"],
    "tnc.models.model": ["CoupledModel", "compile_model", "coupled_model"],
    "tnc.fitting.coupled": ["CoupledResult", "fit_model", "load_coupled"],
    "tnc.mps.born": ["BornMachine", "UniformMPS", "load_born", "train_born", "train_uniform"],
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}
# Modules reachable under their short public names: tnc.multifac.multifac(...),
# tnc.kernels.use("avx2"), tnc.torch.contract / tnc.torch.Layer and tnc.jax.contract (torch
# and jax load only then).
_MODULES = {"multifac": "tnc.models.multifac", "kernels": "tnc.engine.kernels",
            "torch": "tnc.torch", "jax": "tnc.jax"}

# not in __all__: `from tnc import *` must not need the optional torch and jax
__all__ = sorted(_WHERE) + sorted(set(_MODULES) - {"torch", "jax"}) + ["__version__"]


def __getattr__(name):
    """Load a public name's module on first use (PEP 562)."""
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'tnc' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

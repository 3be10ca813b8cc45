"""tnc: a tensor-network expression compiler.

Write a network in the tnc language, compile it, contract it::

    >>> import tnc
    >>> net = tnc.library("tt", N=4, d=2, r=3)
    >>> net.contract(net.random()).shape
    (2, 2, 2, 2)
"""
from .compiler import compile, compile_all, library, library_names
from .einsum_text import from_einsum
from .errors import MemoryLimitError, TensorError, TncError, TncSemanticError, TncSyntaxError
from .fitting import fit, fit_options, register_method
from .losses import Loss, get_loss, register_loss
from .network import Network
from .result import FitResult, load_result
from .decompositions import decompose, tt_round
from .tt import TensorTrain, TTMatrix
from .cross import CrossResult, tt_cross
from .sparse import SparseTensor
from .plan import Cost
from .mpo import heisenberg_mpo, ising_mpo
from .dmrg import ground_state
from .stratified import StratifiedResult, ntf, stratified_ntf
from .model import CoupledModel, compile_model, coupled_model
from .coupled import CoupledResult, fit_model, load_coupled
from . import multifac   # tnc.multifac.multifac(...): linked tensor factorization
from .born import BornMachine, UniformMPS, load_born, train_born, train_uniform

__version__ = "0.1.0"

__all__ = ["compile", "compile_all", "library", "library_names", "Network", "Cost",
           "TncError", "TncSyntaxError", "TncSemanticError", "TensorError",
           "MemoryLimitError", "fit", "fit_options", "register_method", "FitResult",
           "load_result", "decompose", "tt_round", "SparseTensor", "from_einsum", "Loss", "get_loss", "register_loss", "ground_state", "heisenberg_mpo", "ising_mpo", "__version__",
           "CoupledModel", "compile_model", "coupled_model", "CoupledResult", "fit_model",
           "load_coupled", "multifac", "TensorTrain", "TTMatrix", "tt_cross", "CrossResult",
           "BornMachine", "UniformMPS", "load_born", "train_born", "train_uniform"]

"""pyro_bnn: Bayesian neural networks in Pyro, and an honest robustness reproduction.

from pyro_bnn import load_mnist, MLP, fit_torch
"""

from .artifacts import load_artifact, save_artifact
from .data import MNIST, DataError, Split, load_mnist
from .evaluate import as_probs, evaluate, evaluate_many, write_table
from .nets import MLP, l2_penalty, mlp_forward, param_shapes, parse_arch
from .train import FitResult, fit_torch, train_baseline

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "MNIST",
    "DataError",
    "FitResult",
    "Split",
    "as_probs",
    "evaluate",
    "evaluate_many",
    "fit_torch",
    "l2_penalty",
    "load_artifact",
    "load_mnist",
    "mlp_forward",
    "param_shapes",
    "parse_arch",
    "save_artifact",
    "train_baseline",
    "write_table",
]

"""pyro_bnn: Bayesian neural networks in Pyro, and an honest robustness reproduction.

Importing pyro_bnn switches Pyro to module-local parameters
(``pyro.settings.set(module_local_params=True)``): every guide keeps its parameters on
itself rather than in Pyro's global param store, so several BNNs can live in one process.
"""

import pyro
import pyro.nn  # registers the module_local_params setting before it is set below

from .artifacts import load_artifact, save_artifact
from .attacks import distortion, eot_attack, min_norm_attack, paper_attack, perturb
from .bnn import BayesianMLP, DatapointELBO
from .data import MNIST, DataError, Split, load_mnist
from .evaluate import as_probs, evaluate, evaluate_many, write_table
from .guides import AutoSoftplusNormal, init_to_truncated_normal, make_guide
from .nets import MLP, l2_penalty, mlp_forward, param_shapes, parse_arch
from .predict import (
    ensemble_fn,
    mean_fn,
    posterior_mean,
    predictive_probs,
    sample_weights,
    sampler,
    single_sample_fn,
)
from .priors import ScaleMixtureNormal, make_prior
from .pruning import prune
from .train import FitResult, fit_svi, fit_torch
from .zoo import train_baseline, train_bnn

pyro.settings.set(module_local_params=True)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "MNIST",
    "AutoSoftplusNormal",
    "BayesianMLP",
    "DataError",
    "DatapointELBO",
    "FitResult",
    "ScaleMixtureNormal",
    "Split",
    "as_probs",
    "distortion",
    "eot_attack",
    "ensemble_fn",
    "evaluate",
    "evaluate_many",
    "fit_svi",
    "fit_torch",
    "init_to_truncated_normal",
    "l2_penalty",
    "load_artifact",
    "load_mnist",
    "make_guide",
    "make_prior",
    "mean_fn",
    "min_norm_attack",
    "mlp_forward",
    "paper_attack",
    "param_shapes",
    "parse_arch",
    "posterior_mean",
    "perturb",
    "predictive_probs",
    "prune",
    "sample_weights",
    "sampler",
    "save_artifact",
    "single_sample_fn",
    "train_baseline",
    "train_bnn",
    "write_table",
]

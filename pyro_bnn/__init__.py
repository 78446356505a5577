"""pyro_bnn: make any torch net Bayesian in Pyro, fit it by SVI, sample its posterior
predictive, and attack it.

Importing pyro_bnn changes no Pyro or torch setting. The library's own fitting and
prediction keep each guide's parameters on the guide (Pyro's ``module_local_params``,
scoped to those calls), so several BNNs live in one process; the guides also work with
``pyro.infer.SVI`` and Pyro's global param store.
"""

from .artifacts import load_artifact, load_bnn, save_artifact, save_bnn
from .attacks import (
    PGDAdversary,
    distortion,
    eot_attack,
    min_norm_attack,
    paper_attack,
    perturb,
    pgd_attack,
    robust_accuracy,
)
from .bnn import BNN, BayesianMLP, DatapointELBO, init_guide
from .data import MNIST, DataError, Split, as_split, load_mnist
from .evaluate import as_probs, detect, evaluate, evaluate_many, write_table
from .guides import (
    DEFAULT_RHO_INIT,
    AutoSoftplusNormal,
    MCDropout,
    default_init,
    init_to_net,
    init_to_net_init,
    init_to_truncated_normal,
    make_guide,
)
from .likelihoods import Bernoulli, Categorical, Gaussian, Likelihood, make_likelihood
from .mcmc import MCMCResult, PosteriorSamples, fit_mcmc
from .nets import MLP, l2_penalty, mlp_forward, param_shapes, parse_arch
from .predict import (
    dropout_sampler,
    ensemble_fn,
    mean_fn,
    posterior_mean,
    predictive,
    predictive_interval,
    predictive_probs,
    sample_posterior,
    sample_weights,
    sampler,
    single_sample_fn,
)
from .priors import ScaleMixtureNormal, make_prior
from .pruning import prune
from .sgmcmc import SGMCMCResult, fisher_scale, fit_csghmc
from .stack import fit_stack
from .train import FitResult, fit_svi, fit_torch, sgd
from .uncertainty import (
    auroc,
    expected_entropy,
    mutual_information,
    predictive_entropy,
    uncertainty,
)

__version__ = "0.1.0"

__all__ = [
    "AutoSoftplusNormal",
    "BNN",
    "BayesianMLP",
    "Bernoulli",
    "Categorical",
    "DEFAULT_RHO_INIT",
    "DataError",
    "DatapointELBO",
    "FitResult",
    "Gaussian",
    "Likelihood",
    "MCDropout",
    "MCMCResult",
    "MLP",
    "MNIST",
    "PGDAdversary",
    "PosteriorSamples",
    "SGMCMCResult",
    "ScaleMixtureNormal",
    "Split",
    "as_probs",
    "as_split",
    "auroc",
    "detect",
    "distortion",
    "dropout_sampler",
    "ensemble_fn",
    "eot_attack",
    "evaluate",
    "evaluate_many",
    "expected_entropy",
    "fisher_scale",
    "fit_csghmc",
    "fit_mcmc",
    "fit_stack",
    "fit_svi",
    "fit_torch",
    "default_init",
    "init_guide",
    "init_to_net",
    "init_to_net_init",
    "init_to_truncated_normal",
    "l2_penalty",
    "load_artifact",
    "load_bnn",
    "load_mnist",
    "make_guide",
    "make_likelihood",
    "make_prior",
    "mean_fn",
    "min_norm_attack",
    "mlp_forward",
    "mutual_information",
    "paper_attack",
    "param_shapes",
    "parse_arch",
    "perturb",
    "pgd_attack",
    "posterior_mean",
    "predictive",
    "predictive_entropy",
    "predictive_interval",
    "predictive_probs",
    "prune",
    "robust_accuracy",
    "sample_posterior",
    "sample_weights",
    "sampler",
    "save_artifact",
    "save_bnn",
    "sgd",
    "single_sample_fn",
    "uncertainty",
    "write_table",
]

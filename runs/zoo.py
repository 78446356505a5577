"""The model zoo: every trained net of the study as a named artifact, trained on first use
and loaded afterwards.

An artifact's folder (:mod:`runs.naming`) holds the state dict and meta.json; training
checkpoints there every epoch, so a killed run resumes. A rerun with the same config loads
the net and, given ``log=print``, says so; a changed setting trains into a folder of its
own. :func:`baseline_artifact` and :func:`bnn_artifact` give (path, config) without
training, so a caller can check ``matching_meta(path, config)`` to see what is left to do.

>>> net, meta = train_baseline("FC-100-100-10", 1e-4, load_mnist(), log=print)
>>> bnn, guide, meta = train_bnn(-3.0, load_mnist(), train=replace(BNN, max_epochs=10))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from pyro_bnn.artifacts import DEFAULT_ROOT, cached
from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.data import MNIST
from pyro_bnn.guides import DEFAULT_RHO_INIT, make_guide
from pyro_bnn.nets import MLP, arch_name, parse_arch
from pyro_bnn.priors import make_prior
from pyro_bnn.train import fit_svi, fit_torch

from . import paper
from .config import BNN, PLAIN, TrainConfig
from .naming import artifact_path, baseline_name, bnn_name

__all__ = ["baseline_artifact", "bnn_artifact", "build_bnn", "train_baseline", "train_bnn"]

CHECKPOINT = "checkpoint.pt"


def _data_config(data: MNIST) -> dict:
    return {"n_train": len(data.train), "n_val": len(data.val)}


def baseline_artifact(
    arch: str,
    lam: float,
    data: MNIST,
    *,
    train: TrainConfig = PLAIN,
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "baseline",
    seed: int = 0,
) -> tuple[Path, dict]:
    """(folder, config) of a plain net's artifact, e.g. under ``<root>/baseline/``."""
    arch, lam = arch_name(parse_arch(arch)), float(lam)
    config = {"arch": arch, "lam": lam, "seed": seed, **_data_config(data), **train.settings()}
    return artifact_path(root, kind, baseline_name(arch, lam, seed), config), config


def train_baseline(
    arch: str,
    lam: float,
    data: MNIST,
    *,
    train: TrainConfig = PLAIN,
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "baseline",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[MLP, dict]:
    """Train a plain net with the eq. 6 penalty ``lam``, or load its finished artifact.

    :param arch: e.g. 'FC-100-100-10'.
    :param lam: the eq. 6 L2 strength.
    :param train: the training settings (default: the paper's).
    :param kind: the artifact kind: 'baseline', 'source' or 'pool'.
    :param log: gets one line saying whether the net was reused or trained, and where.
    :returns: (net on ``device``, meta).
    """
    path, config = baseline_artifact(arch, lam, data, train=train, root=root, kind=kind, seed=seed)
    torch.manual_seed(seed)
    model = MLP(config["arch"])

    def fit() -> tuple[dict, dict]:
        result = fit_torch(
            model,
            data,
            lam=config["lam"],
            seed=seed,
            device=device,
            checkpoint=path / CHECKPOINT,
            progress=progress,
            **train.fit_kwargs(),
        )
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        return state, {**result.summary(), "history": result.history}

    tensors, meta = cached(path, config, fit, log=log)
    (path / CHECKPOINT).unlink(missing_ok=True)
    model.load_state_dict(tensors)
    return model.to(device), meta


def build_bnn(
    arch: str = paper.TABLE1_ARCH,
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    rho_init: float = DEFAULT_RHO_INIT,
    state: dict | None = None,
):
    """A (BayesianMLP, guide) pair from names; loads a guide state dict if given."""
    model = BayesianMLP(arch, prior=make_prior(prior, **(prior_kwargs or {})))
    kwargs = {} if guide == "delta" else {"rho_init": rho_init}
    guide_module = make_guide(guide, model, **kwargs)
    if state is not None:
        init_guide(model, guide_module)
        guide_module.load_state_dict(state)
    return model, guide_module


def bnn_artifact(
    rho_init: float,
    data: MNIST,
    *,
    arch: str = paper.TABLE1_ARCH,
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    train: TrainConfig = BNN,
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "bnn",
    seed: int = 0,
) -> tuple[Path, dict]:
    """(folder, config) of a BNN's artifact, e.g. under ``<root>/bnn/``."""
    arch, rho_init = arch_name(parse_arch(arch)), float(rho_init)
    config = {
        "arch": arch,
        "prior": prior,
        "prior_kwargs": prior_kwargs or {},
        "guide": guide,
        "rho_init": rho_init,
        "seed": seed,
        **_data_config(data),
        **train.settings(svi=True),
    }
    return artifact_path(root, kind, bnn_name(arch, rho_init, seed, guide), config), config


def train_bnn(
    rho_init: float,
    data: MNIST,
    *,
    arch: str = paper.TABLE1_ARCH,
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    train: TrainConfig = BNN,
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "bnn",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
):
    """Fit a BNN by SVI, or load its finished artifact (the guide's state dict).

    :param rho_init: the guide's initial rho; the paper sweeps -30 ... -1.5.
    :param prior: a prior name (:func:`pyro_bnn.priors.make_prior`) and its kwargs.
    :param guide: a guide name (:func:`pyro_bnn.guides.make_guide`).
    :param train: the training settings (default: the paper's, at most 300 epochs).
    :param log: gets one line saying whether the BNN was reused or trained, and where.
    :returns: (model, guide on ``device``, meta).
    """
    path, config = bnn_artifact(
        rho_init,
        data,
        arch=arch,
        prior=prior,
        prior_kwargs=prior_kwargs,
        guide=guide,
        train=train,
        root=root,
        kind=kind,
        seed=seed,
    )
    spec = {k: config[k] for k in ("arch", "prior", "prior_kwargs", "guide", "rho_init")}

    def fit() -> tuple[dict, dict]:
        pyro.set_rng_seed(seed)
        model, guide_module = build_bnn(**spec)
        result = fit_svi(
            model,
            guide_module,
            data,
            seed=seed,
            device=device,
            checkpoint=path / CHECKPOINT,
            progress=progress,
            **train.fit_kwargs(svi=True),
        )
        state = {k: v.detach().cpu() for k, v in guide_module.state_dict().items()}
        return state, {**result.summary(), "history": result.history}

    tensors, meta = cached(path, config, fit, log=log)
    (path / CHECKPOINT).unlink(missing_ok=True)
    model, guide_module = build_bnn(**spec, state=tensors)
    return model, guide_module.to(device), meta

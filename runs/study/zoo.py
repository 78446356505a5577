"""The model zoo: every trained net of the study as a named artifact, trained on first use
and loaded afterwards.

An artifact's folder (:mod:`runs.study.naming`) holds the state dict and meta.json; training
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

from pyro_bnn.artifacts import DEFAULT_ROOT, cached, matching_meta
from pyro_bnn.attacks import PGDAdversary
from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.data import MNIST
from pyro_bnn.guides import DEFAULT_RHO_INIT, make_guide
from pyro_bnn.nets import MLP, arch_name, parse_arch
from pyro_bnn.priors import make_prior
from pyro_bnn.stack import fit_stack, stack_problem
from pyro_bnn.train import fit_svi, fit_torch

from . import paper
from .config import BNN, PLAIN, TrainConfig
from .naming import artifact_path, baseline_name, bnn_name

__all__ = [
    "CONTROLS",
    "PAPER_SOURCE_KIND",
    "baseline_artifact",
    "bnn_artifact",
    "build_bnn",
    "train_baseline",
    "train_bnn",
    "train_bnns",
]

CHECKPOINT = "checkpoint.pt"
STACKABLE = {("softplus-normal", "scale-mixture"), ("softplus-normal", "normal")}
# BNN training with one part taken away (pyro_bnn.stack.fit_stack's per-model knobs): sigma
# held at softplus(rho_init) with the KL kept, or held with no KL (noise, likelihood alone)
CONTROLS = {
    "fixed-sigma": {"kl_weight": 1.0, "train_sigma": False},
    "noise-only": {"kl_weight": 0.0, "train_sigma": False},
}


PAPER_SOURCE_KIND = "paper-source"  # the artifact kind of the paper protocol's own sources


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
    adversary: PGDAdversary | None = None,
) -> tuple[Path, dict]:
    """(folder, config) of a plain net's artifact, e.g. under ``<root>/baseline/``."""
    arch, lam = arch_name(parse_arch(arch)), float(lam)
    config = {"arch": arch, "lam": lam, "seed": seed, **_data_config(data), **train.settings()}
    if adversary is not None:  # absent otherwise: the other nets keep their hash
        config["adversary"] = repr(adversary)
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
    adversary: PGDAdversary | None = None,
) -> tuple[MLP, dict]:
    """Train a plain net with the eq. 6 penalty ``lam``, or load its finished artifact.

    :param arch: e.g. 'FC-100-100-10'.
    :param lam: the eq. 6 L2 strength.
    :param train: the training settings (default: the paper's).
    :param kind: the artifact kind: 'baseline', 'matched', 'source', 'paper-source',
        'pool' or 'adv'.
    :param log: gets one line saying whether the net was reused or trained, and where.
    :param adversary: adversarial training on its examples (validation stays clean).
    :returns: (net on ``device``, meta).
    """
    path, config = baseline_artifact(arch, lam, data, train=train, root=root, kind=kind, seed=seed,
                                     adversary=adversary)  # fmt: skip
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
            adversary=adversary,
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
    control: str | None = None,
) -> tuple[Path, dict]:
    """(folder, config) of a BNN's artifact, e.g. under ``<root>/bnn/``; a control's under
    ``<root>/<control>/``."""
    arch, rho_init = arch_name(parse_arch(arch)), float(rho_init)
    config = {
        "arch": arch,
        "prior": prior,
        "prior_kwargs": prior_kwargs or {},
        "guide": guide,
        "rho_init": rho_init,
        "seed": seed,
        # the engine train_bnns picks: the stack for the paper's guide with a Normal-family prior
        "engine": "stack" if (guide, prior) in STACKABLE else "pyro",
        **_data_config(data),
        **train.settings(svi=True),
    }
    if control is not None:  # absent otherwise: the BNNs keep their hash
        config["control"] = control
        kind = control
    return artifact_path(root, kind, bnn_name(arch, rho_init, seed, guide), config), config


def train_bnns(
    rho_inits: list[float],
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
    compile: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    control: str | None = None,
) -> list[tuple]:
    """Fit one BNN per rho_init by SVI, or load the finished artifacts (guide state dicts).

    The BNNs not yet done train together in one stack (:func:`pyro_bnn.stack.fit_stack`),
    each exactly as it would train alone; other guides and priors train one by one by
    Pyro's Trace_ELBO (:func:`pyro_bnn.train.fit_svi`).

    :param rho_inits: the guides' initial rho; the paper sweeps -30 ... -1.5.
    :param prior: a prior name (:func:`pyro_bnn.priors.make_prior`) and its kwargs.
    :param guide: a guide name (:func:`pyro_bnn.guides.make_guide`).
    :param train: the training settings (default: the study's, :data:`runs.study.config.BNN`).
    :param compile: fuse the stack's weight draw with ``torch.compile``.
    :param log: gets one line per BNN saying whether it was reused or trained, and where.
    :param control: a key of :data:`CONTROLS`: train each as that control instead (stacked
        engine only).
    :returns: one (model, guide, meta) per rho_init, model and guide on ``device`` (the
        model's prior too, which Pyro's Predictive runs on the inputs' device).
    """
    if control is not None and control not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
    knobs = CONTROLS.get(control, {})
    found = [
        bnn_artifact(rho, data, arch=arch, prior=prior, prior_kwargs=prior_kwargs, guide=guide,
                     train=train, root=root, kind=kind, seed=seed, control=control)
        for rho in rho_inits
    ]  # fmt: skip
    specs = [{k: config[k] for k in ("arch", "prior", "prior_kwargs", "guide", "rho_init")}
             for _, config in found]  # fmt: skip
    todo = [i for i, (path, config) in enumerate(found) if matching_meta(path, config) is None]
    fitted: dict[int, tuple[dict, dict]] = {}
    if todo:
        pairs = []
        for i in todo:
            pyro.set_rng_seed(seed)
            pairs.append(build_bnn(**specs[i]))
        models, guides = [m for m, _ in pairs], [g for _, g in pairs]
        kwargs = dict(seed=seed, device=device, progress=progress, **train.fit_kwargs(svi=True))
        if stack_problem(models[0], guides[0]) is None:
            del kwargs["seed"]
            results = fit_stack(
                models, guides, data, seeds=[seed] * len(todo), compile=compile,
                checkpoints=[found[i][0] / CHECKPOINT for i in todo],
                kl_weights=[knobs.get("kl_weight", 1.0)] * len(todo),
                train_sigma=[knobs.get("train_sigma", True)] * len(todo), **kwargs,
            )  # fmt: skip
        elif control is not None:
            raise ValueError(f"a control trains in the stack only: {stack_problem(*pairs[0])}")
        else:
            results = [
                fit_svi(m, g, data, checkpoint=found[i][0] / CHECKPOINT, **kwargs)
                for i, m, g in zip(todo, models, guides)
            ]
        for i, g, result in zip(todo, guides, results):
            state = {k: v.detach().cpu() for k, v in g.state_dict().items()}
            fitted[i] = state, {**result.summary(), "history": result.history}
    out = []
    for i, (path, config) in enumerate(found):
        tensors, meta = cached(path, config, lambda i=i: fitted[i], log=log)
        (path / CHECKPOINT).unlink(missing_ok=True)
        model, guide_module = build_bnn(**specs[i], state=tensors)
        out.append((model.to(device), guide_module.to(device), meta))
    return out


def train_bnn(rho_init: float, data: MNIST, **kwargs):
    """One BNN of :func:`train_bnns`: (model, guide, meta), both on ``device``.

    :param rho_init: the guide's initial rho.
    :param kwargs: as for :func:`train_bnns`.
    """
    return train_bnns([rho_init], data, **kwargs)[0]

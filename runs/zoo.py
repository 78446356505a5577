"""The model zoo: every trained net of the study as a named artifact, trained on first use
and loaded afterwards.

``<root>/<kind>/<name>/`` holds the state dict and meta.json; training checkpoints there
every epoch, so a killed run resumes, and a rerun with the same config only loads.
:func:`baseline_artifact` and :func:`bnn_artifact` give (path, config) without training,
so a caller can check ``matching_meta(path, config)`` to see what is left to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyro
import torch

from pyro_bnn.artifacts import DEFAULT_ROOT, artifact_dir, load_artifact, matching_meta, save_artifact
from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.data import MNIST
from pyro_bnn.guides import make_guide
from pyro_bnn.nets import MLP, arch_name, parse_arch
from pyro_bnn.priors import make_prior
from pyro_bnn.train import fit_svi, fit_torch

__all__ = [
    "baseline_artifact",
    "baseline_name",
    "bnn_artifact",
    "bnn_name",
    "build_bnn",
    "train_baseline",
    "train_bnn",
]


def baseline_name(arch: str, lam: float, seed: int) -> str:
    """Artifact name of a plain net, e.g. 'FC-100-100-10_lam0.0001_seed0'."""
    return f"{arch}_lam{lam:g}_seed{seed}"


def bnn_name(arch: str, rho_init: float, seed: int, guide: str = "softplus-normal") -> str:
    """Artifact name of a BNN, e.g. 'FC-100-100-10_rho-3_seed0'."""
    suffix = "" if guide == "softplus-normal" else f"_{guide}"
    return f"{arch}_rho{rho_init:g}_seed{seed}{suffix}"


def _data_config(data: MNIST) -> dict:
    return {"n_train": len(data.train), "n_val": len(data.val)}


def baseline_artifact(
    arch: str,
    lam: float,
    data: MNIST,
    *,
    root=DEFAULT_ROOT,
    kind: str = "baseline",
    seed: int = 0,
    **settings,
) -> tuple[Path, dict]:
    """(folder, config) of a plain net's artifact; ``settings`` are fit_torch's."""
    arch = arch_name(parse_arch(arch))
    config = {"arch": arch, "lam": lam, "seed": seed, **_data_config(data), **settings}
    return artifact_dir(root, kind, baseline_name(arch, lam, seed)), config


def train_baseline(
    arch: str,
    lam: float,
    data: MNIST,
    *,
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "baseline",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **settings,
) -> tuple[MLP, dict]:
    """Train a plain net with the eq. 6 penalty ``lam``, or load its finished artifact.

    ``settings`` go to :func:`pyro_bnn.train.fit_torch`. Returns (net, meta).
    """
    path, config = baseline_artifact(arch, lam, data, root=root, kind=kind, seed=seed, **settings)
    torch.manual_seed(seed)
    model = MLP(config["arch"])
    if matching_meta(path, config) is None:
        result = fit_torch(
            model,
            data,
            lam=lam,
            seed=seed,
            device=device,
            checkpoint=path / "checkpoint.pt",
            progress=progress,
            **settings,
        )
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        save_artifact(path, state, config, **result.summary(), history=result.history)
        (path / "checkpoint.pt").unlink(missing_ok=True)
    tensors, meta = load_artifact(path)
    model.load_state_dict(tensors)
    return model.to(device), meta


def build_bnn(
    arch: str = "FC-100-100-10",
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    rho_init: float = -3.0,
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
    arch: str = "FC-100-100-10",
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    root=DEFAULT_ROOT,
    kind: str = "bnn",
    seed: int = 0,
    **settings,
) -> tuple[Path, dict]:
    """(folder, config) of a BNN's artifact; ``settings`` are fit_svi's."""
    arch = arch_name(parse_arch(arch))
    config = {
        "arch": arch,
        "prior": prior,
        "prior_kwargs": prior_kwargs or {},
        "guide": guide,
        "rho_init": rho_init,
        "seed": seed,
        **_data_config(data),
        **settings,
    }
    return artifact_dir(root, kind, bnn_name(arch, rho_init, seed, guide)), config


def train_bnn(
    rho_init: float,
    data: MNIST,
    *,
    arch: str = "FC-100-100-10",
    prior: str = "scale-mixture",
    prior_kwargs: dict | None = None,
    guide: str = "softplus-normal",
    root: str | os.PathLike = DEFAULT_ROOT,
    kind: str = "bnn",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **settings,
):
    """Fit a BNN by SVI, or load its finished artifact (the guide's state dict).

    ``settings`` go to :func:`pyro_bnn.train.fit_svi`. Returns (model, guide, meta).
    """
    path, config = bnn_artifact(
        rho_init,
        data,
        arch=arch,
        prior=prior,
        prior_kwargs=prior_kwargs,
        guide=guide,
        root=root,
        kind=kind,
        seed=seed,
        **settings,
    )
    spec = {k: config[k] for k in ("arch", "prior", "prior_kwargs", "guide", "rho_init")}
    if matching_meta(path, config) is None:
        pyro.set_rng_seed(seed)
        model, guide_module = build_bnn(**spec)
        result = fit_svi(
            model,
            guide_module,
            data,
            seed=seed,
            device=device,
            checkpoint=path / "checkpoint.pt",
            progress=progress,
            **settings,
        )
        state = {k: v.detach().cpu() for k, v in guide_module.state_dict().items()}
        save_artifact(path, state, config, **result.summary(), history=result.history)
        (path / "checkpoint.pt").unlink(missing_ok=True)
    tensors, meta = load_artifact(path)
    model, guide_module = build_bnn(**spec, state=tensors)
    return model, guide_module.to(device), meta

"""Training: ``fit_torch`` for the plain baselines, ``fit_svi`` for the Bayesian net.

Both share one epoch loop: minibatches drawn from in-memory tensors (no DataLoader),
SGD with momentum, early stopping on validation accuracy that restores the best weights,
a tqdm bar, and an optional checkpoint written atomically after every epoch so that a
killed run resumes where it stopped.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .artifacts import load_checkpoint, save_checkpoint
from .bnn import BayesianMLP, DatapointELBO, check_inputs
from .data import MNIST
from .nets import MLP, l2_penalty
from .predict import predictive_probs, sample_weights

__all__ = ["FitResult", "fit_svi", "fit_torch", "run_epochs"]


@dataclass
class FitResult:
    """What a fit did: epochs run, the best epoch (1-based) and its validation accuracy."""

    epochs: int
    best_epoch: int
    best_val_acc: float
    stopped_early: bool
    wall_time_s: float
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def check_positive(name: str, value: float, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless value is a finite number > 0."""
    bad = not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
    if integer and not bad:
        bad = int(value) != value
    if bad:
        kind = "a positive integer" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def check_sgd_settings(lr, momentum, batch_size, max_epochs, patience) -> None:
    check_positive("lr", lr)
    if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    check_positive("batch_size", batch_size, integer=True)
    check_positive("max_epochs", max_epochs, integer=True)
    check_positive("patience", patience, integer=True)


def run_epochs(
    trainable: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    validate: Callable[[], float],
    *,
    n_train: int,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    device: torch.device,
    checkpoint: str | os.PathLike | None,
    progress: bool,
    desc: str,
    config: dict,
) -> FitResult:
    """The shared loop. ``step(idx)`` trains on batch indices and returns metric tensors;
    ``validate()`` returns validation accuracy in [0, 1]. A checkpoint is resumed only if it
    was written under the same ``config``."""
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state is not None and state.get("config") == config:
        trainable.load_state_dict(state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
    else:
        state = {
            "config": config,
            "epoch": 0,
            "best": None,
            "best_val": -1.0,
            "best_epoch": 0,
            "bad": 0,
            "history": [],
            "wall": 0.0,
            "stopped": False,
        }
    bar = tqdm(
        total=max_epochs,
        initial=state["epoch"],
        desc=desc,
        disable=not progress,
        unit="epoch",
        dynamic_ncols=True,
    )
    while state["epoch"] < max_epochs and not state["stopped"]:
        start = time.perf_counter()
        epoch = state["epoch"]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_train, generator=generator).to(device)
        sums: dict[str, torch.Tensor] = {}
        n_batches = 0
        for i in range(0, n_train, batch_size):
            for key, value in step(perm[i : i + batch_size]).items():
                sums[key] = sums.get(key, 0.0) + value.detach()
            n_batches += 1
        val_acc = float(validate())
        record = {
            "epoch": epoch + 1,
            **{k: float(v) / n_batches for k, v in sums.items()},
            "val_acc": val_acc,
        }
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: {record}")
        state["history"].append(record)
        if val_acc > state["best_val"]:
            state.update(
                best_val=val_acc,
                best_epoch=epoch + 1,
                bad=0,
                best=copy.deepcopy(trainable.state_dict()),
            )
        else:
            state["bad"] += 1
        state["stopped"] = state["bad"] >= patience
        state["epoch"] = epoch + 1
        state["wall"] += time.perf_counter() - start
        if checkpoint:
            save_checkpoint(
                checkpoint,
                {
                    **state,
                    "trainable": trainable.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(),
                },
            )
        bar.set_postfix(
            {k: f"{v:.4g}" for k, v in record.items() if k != "epoch"}
            | {"best": f"{state['best_val']:.4f}"}
        )
        bar.update(1)
    bar.close()
    trainable.load_state_dict(state["best"])
    return FitResult(
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val_acc=state["best_val"],
        stopped_early=state["stopped"],
        wall_time_s=round(state["wall"], 2),
        history=state["history"],
    )


@torch.no_grad()
def accuracy_of(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    chunk_size: int = 10_000,
) -> float:
    """Fraction of argmax(logits_fn(x)) == y, computed in chunks."""
    correct = sum(
        int((logits_fn(x[i : i + chunk_size]).argmax(-1) == y[i : i + chunk_size]).sum())
        for i in range(0, len(y), chunk_size)
    )
    return correct / len(y)


def fit_torch(
    model: MLP,
    data: MNIST,
    *,
    lam: float = 0.0,
    lr: float = 1e-3,
    momentum: float = 0.95,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a plain MLP with mean cross-entropy + the eq. 6 L2 penalty (``lam``).

    SGD with momentum on minibatches of the in-memory train split; early stopping on
    validation accuracy with ``patience`` epochs; the best weights are restored in place.

    >>> result = fit_torch(MLP((100, 100, 10)), load_mnist(), lam=1e-4)
    """
    check_sgd_settings(lr, momentum, batch_size, max_epochs, patience)
    if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    device = torch.device(device)
    torch.manual_seed(seed)
    model.to(device)
    train, val = data.train.to(device), data.val.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        optimizer.zero_grad(set_to_none=True)
        ce = F.cross_entropy(model(train.x[idx]), train.y[idx])
        loss = ce + l2_penalty(model, lam) if lam else ce
        loss.backward()
        optimizer.step()
        return {"loss": loss, "ce": ce}

    config = {
        "arch": model.arch,
        "lam": lam,
        "lr": lr,
        "momentum": momentum,
        "batch_size": batch_size,
        "max_epochs": max_epochs,
        "patience": patience,
        "seed": seed,
    }
    return run_epochs(
        model,
        optimizer,
        step,
        lambda: accuracy_of(model, val.x, val.y),
        n_train=len(train),
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        device=device,
        checkpoint=checkpoint,
        progress=progress,
        desc=f"{model.arch} lam={lam:g}",
        config=config,
    )


def fit_svi(
    model: BayesianMLP,
    guide,
    data: MNIST,
    *,
    lr: float = 1e-3,
    momentum: float = 0.95,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int = 5,
    val_samples: int = 10,
    num_particles: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit ``guide`` to ``model`` by SVI on the train split; the guide is updated in place.

    The loss is the ELBO per datapoint (:class:`~pyro_bnn.bnn.DatapointELBO`) with
    ``num_particles`` weight samples per step (1, as in the paper), minimised by SGD with
    momentum. Early stopping watches validation accuracy of the mean prediction of
    ``val_samples`` weight samples (the authors used 10) and restores the best guide.
    The bar shows the epoch means of ELBO, NLL and KL, all per datapoint.

    >>> bnn = BayesianMLP(); guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    >>> result = fit_svi(bnn, guide, load_mnist())
    """
    check_sgd_settings(lr, momentum, batch_size, max_epochs, patience)
    check_positive("val_samples", val_samples, integer=True)
    check_positive("num_particles", num_particles, integer=True)
    device = torch.device(device)
    train, val = data.train.to(device), data.val.to(device)
    for split in (train, val):
        check_inputs(split.x, split.y, model.in_features)
    pyro.set_rng_seed(seed)
    n = len(train)
    with torch.no_grad():  # creates the guide's parameters on first call
        guide(train.x[:batch_size], train.y[:batch_size], num_data=n)
    guide.to(device)
    optimizer = torch.optim.SGD(guide.parameters(), lr=lr, momentum=momentum)
    elbo = DatapointELBO(
        n, num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1
    )

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        optimizer.zero_grad(set_to_none=True)
        loss = elbo.differentiable_loss(model, guide, train.x[idx], train.y[idx], num_data=n)
        loss.backward()
        optimizer.step()
        return elbo.parts

    def validate() -> float:
        weights = sample_weights(model, guide, val_samples)
        probs = predictive_probs(model, weights, val.x).mean(0)
        return (probs.argmax(-1) == val.y).double().mean().item()

    config = {
        "arch": model.arch,
        "prior": repr(model.prior),
        "guide": type(guide).__name__,
        "lr": lr,
        "momentum": momentum,
        "batch_size": batch_size,
        "max_epochs": max_epochs,
        "patience": patience,
        "val_samples": val_samples,
        "num_particles": num_particles,
        "seed": seed,
    }
    with pyro.validation_enabled(False):  # inputs were checked above; saves ~10% per step
        return run_epochs(
            guide,
            optimizer,
            step,
            validate,
            n_train=n,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
            device=device,
            checkpoint=checkpoint,
            progress=progress,
            config=config,
            desc=f"SVI {model.arch} {type(guide).__name__}",
        )

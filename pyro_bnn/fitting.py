"""What every fit shares: the optimiser (the paper's SGD by default), the result, the
argument checks, and the minibatch order of each epoch of a seeded fit.

>>> fit_svi(bnn, guide, (x, y), optimizer=sgd(lr=1e-2))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyro
import torch
from pyro.optim import PyroOptim
from pyro.optim.lr_scheduler import PyroLRScheduler
from torch.utils.data import DataLoader

from .bnn import BNN
from .data import Split

__all__ = ["Callback", "FitResult", "OptimizerFactory", "check_device", "epoch_order", "sgd"]

# params -> torch optimizer, e.g. sgd() or functools.partial(torch.optim.Adam, lr=1e-3)
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
Callback = Callable[[dict], "bool | None"]  # an epoch's record -> True to stop


def sgd(lr: float = 1e-3, momentum: float = 0.95) -> OptimizerFactory:
    """The paper's optimiser (Section 3.2): SGD with momentum, as a factory of parameters.

    :param lr: learning rate (per datapoint: the losses here are means).
    :param momentum: in [0, 1).

    >>> fit_svi(bnn, guide, (x, y), optimizer=sgd(lr=1e-2))
    >>> fit_svi(bnn, guide, (x, y), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    """
    check_positive("lr", lr)
    if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    return functools.partial(torch.optim.SGD, lr=lr, momentum=momentum)


@dataclass
class FitResult:
    """What a fit did.

    :param epochs: epochs run.
    :param best_epoch: the epoch (1-based) whose weights were kept.
    :param best_val: its validation score of the ``monitor`` metric (None without
        validation data).
    :param monitor: the metric that picked the best epoch, e.g. 'val_acc'.
    :param stopped_early: whether patience or a callback stopped the run.
    :param wall_time_s: training time in seconds, over resumed runs too.
    :param history: one record per epoch: training means and validation metrics.

    >>> result = fit_svi(bnn, guide, load_mnist())
    >>> result.best_epoch, result.best_val, result.history[-1]["elbo"]
    """

    epochs: int
    best_epoch: int
    best_val: float | None
    monitor: str | None
    stopped_early: bool
    wall_time_s: float
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def check_positive(name: str, value: float, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless value is a finite number > 0."""
    bad = (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    )
    if integer and not bad:
        bad = int(value) != value
    if bad:
        kind = "a positive integer" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a ValueError naming ``device`` and the devices this
    machine has, for a device string torch does not know or a GPU that is not there.

    :param device: e.g. 'cpu', 'cuda' or 'cuda:1'.

    >>> check_device("cuda")  # ValueError on a machine without a GPU
    """
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    ok = parsed is not None and (
        parsed.type == "cpu" or (parsed.type == "cuda" and (parsed.index or 0) < gpus)
    )
    if not ok:
        available = ["cpu", *(["cuda", *(f"cuda:{i}" for i in range(gpus))] if gpus else [])]
        raise ValueError(
            f"device must be one this machine has ({', '.join(available)}), got {device!r}"
        )
    return parsed


def check_loop(batch_size, max_epochs, patience, callbacks) -> None:
    """Raise ValueError for a bad setting of the epoch loop."""
    check_positive("batch_size", batch_size, integer=True)
    check_positive("max_epochs", max_epochs, integer=True)
    if patience is not None:
        check_positive("patience", patience, integer=True)
    if not all(callable(cb) for cb in callbacks):
        raise ValueError(f"callbacks must be a sequence of callables, got {callbacks!r}")


def _from_pyro(optim: PyroOptim) -> OptimizerFactory:
    """The torch optimiser a Pyro optimiser wraps, as a factory over all parameters."""
    args = optim.pt_optim_args
    if isinstance(optim, PyroLRScheduler) or callable(args) or optim.pt_clip_args:
        raise ValueError(
            "optimizer: a Pyro scheduler, per-parameter arguments or clip_args cannot be used "
            "here; pass a factory params -> torch.optim optimizer, e.g. "
            f"functools.partial(torch.optim.Adam, lr=1e-2), got {type(optim).__name__}"
        )
    return functools.partial(optim.pt_optim_constructor, **args)


def make_optimizer(optimizer: OptimizerFactory | PyroOptim | None, params) -> torch.optim.Optimizer:
    """The torch optimiser over ``params`` that ``optimizer`` (a factory or a Pyro optimiser;
    None: :func:`sgd`) makes."""
    factory = sgd() if optimizer is None else optimizer
    if isinstance(factory, PyroOptim):
        factory = _from_pyro(factory)
    if isinstance(factory, torch.optim.Optimizer) or not callable(factory):
        raise ValueError(
            "optimizer must be a factory params -> torch optimizer, e.g. "
            f"functools.partial(torch.optim.Adam, lr=1e-3), got {factory!r}"
        )
    opt = factory(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(f"optimizer must return a torch optimizer, got {type(opt).__name__}")
    return opt


def optimizer_config(opt: torch.optim.Optimizer) -> dict:
    """The optimiser as a checkpoint's config holds it: its class and settings."""
    return {"name": type(opt).__name__, **{k: repr(v) for k, v in sorted(opt.defaults.items())}}


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order (n,) of the training examples in one epoch of a seeded fit.

    :param n: the training-set size.
    :param seed: the fit's seed.
    :param epoch: the epoch, from 0.

    >>> epoch_order(50_000, seed=0, epoch=3)[:128]  # the first minibatch of epoch 4
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def check_split(model: BNN, split: Split | DataLoader, name: str) -> None:
    """Raise ValueError, naming ``name``, for in-memory data the model cannot take."""
    if isinstance(split, DataLoader):
        return
    try:
        model.check_x(split.x)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    if model.out_features is None:  # learn the output width from one example
        with torch.no_grad(), pyro.poutine.block():
            model(split.x[:1])
    try:
        model.check_y(split.y, len(split.y))
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None

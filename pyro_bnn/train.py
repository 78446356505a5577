"""Training: ``fit_torch`` for plain nets, ``fit_svi`` for Bayesian nets, one epoch loop.

Both take the data in any form :func:`pyro_bnn.data.training_data` takes ((x, y) tensors,
a Dataset or DataLoader, or the MNIST splits) and any torch optimiser; the default is the
paper's SGD (Section 3.2: lr 1e-3, momentum 0.95, batch 128). In-memory tensors are
minibatched by index, with no DataLoader in the hot loop. Early stopping on validation
data (patience 5 in the paper's text) and a checkpoint written atomically after every
epoch, so that a killed run resumes, are options; ``callbacks`` see every epoch's record
and can stop the run.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized

import pyro
import torch
import torch.nn.functional as F
from pyro.optim import PyroOptim
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .artifacts import load_checkpoint, save_checkpoint
from .bnn import BNN, DatapointELBO, init_guide, local_params
from .data import Split, training_data
from .fitting import (
    Callback,
    FitResult,
    OptimizerFactory,
    check_device,
    check_loop,
    check_positive,
    check_split,
    epoch_order,
    make_optimizer,
    optimizer_config,
    sgd,
)
from .likelihoods import Gaussian
from .nets import l2_penalty
from .predict import predictive, sample_posterior
from .stack import fit_stack, stack_problem

__all__ = ["Callback", "FitResult", "OptimizerFactory", "fit_svi", "fit_torch", "run_epochs", "sgd"]


def minibatches(
    train: Split | DataLoader, batch_size: int, seed: int, device: torch.device
) -> Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """epoch -> its (x, y) minibatches: in-memory tensors shuffled by a per-epoch seed, or
    the DataLoader as it is."""
    if isinstance(train, DataLoader):

        def loader_batches(epoch: int):
            for x, y in train:
                yield x.to(device), y.to(device)

        return loader_batches
    x_all, y_all = train.x.to(device), train.y.to(device)

    def tensor_batches(epoch: int):
        perm = epoch_order(len(y_all), seed, epoch).to(device)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            yield x_all[idx], y_all[idx]

    return tensor_batches


def run_epochs(
    trainable: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    validate: Callable[[], dict[str, float]] | None,
    *,
    max_epochs: int,
    patience: int | None,
    monitor: str | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike | None,
    progress: bool,
    desc: str,
    config: dict,
    keep: str = "best",
) -> FitResult:
    """The shared loop. ``step(x, y)`` trains on one minibatch and returns metric tensors;
    ``batches(epoch)`` yields the minibatches; ``validate()`` returns validation metrics,
    where ``monitor`` (higher is better; a name starting with '-' is negated) picks the
    best epoch, whose weights are restored at the end. Without ``validate`` the last epoch
    is kept. A checkpoint is resumed only if it was written under the same ``config``.

    :param trainable: the module whose state_dict is checkpointed and restored.
    :param optimizer: the torch optimizer over its parameters.
    :param step: trains on one minibatch (x, y); returns {metric: tensor}.
    :param batches: epoch -> its (x, y) minibatches.
    :param validate: () -> {metric: float}, or None.
    :param max_epochs: the most epochs to run.
    :param patience: epochs without a better ``monitor`` before stopping; None: never.
    :param monitor: the validation metric to maximise ('-name' to minimise).
    :param callbacks: called with each epoch's record; True stops the run.
    :param checkpoint: a file to checkpoint every epoch and resume from, or None.
    :param progress: show a tqdm bar.
    :param desc: the bar's label.
    :param config: what identifies the run (JSON-able); stored in the checkpoint.
    :param keep: 'best' restores the epoch of best ``monitor``; 'last' keeps the last epoch.

    >>> run_epochs(net, opt, step, minibatches(train, 128, 0, "cpu"), None, max_epochs=5,
    ...            patience=None, checkpoint=None, progress=False, desc="fit", config={})
    """
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
            "best_val": None,
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
    sign, key = (-1.0, monitor[1:]) if monitor and monitor.startswith("-") else (1.0, monitor)
    while state["epoch"] < max_epochs and not state["stopped"]:
        start = time.perf_counter()
        epoch = state["epoch"]
        sums: dict[str, torch.Tensor] = {}
        n_batches = 0
        for x, y in batches(epoch):
            for name, value in step(x, y).items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            n_batches += 1
        if n_batches == 0:
            raise ValueError(
                f"data yielded no minibatches in epoch {epoch + 1}; a DataLoader must yield "
                "its data anew every epoch"
            )
        record = {"epoch": epoch + 1, **{k: float(v) / n_batches for k, v in sums.items()}}
        if validate is not None:
            record |= {k: float(v) for k, v in validate().items()}
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: {record}")
        state["history"].append(record)
        if (
            validate is None
            or keep == "last"
            or state["best_val"] is None
            or sign * record[key] > state["best_val"]
        ):
            state.update(
                best_val=None if validate is None else sign * record[key],
                best_epoch=epoch + 1,
                bad=0,
                best=copy.deepcopy(trainable.state_dict()),
            )
        else:
            state["bad"] += 1
        stop = [bool(cb(record)) for cb in callbacks]  # every callback sees every epoch
        state["stopped"] = any(stop) or (patience is not None and state["bad"] >= patience)
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
        shown = {k: f"{v:.4g}" for k, v in record.items() if k != "epoch"}
        if state["best_val"] is not None:
            shown["best"] = f"{sign * state['best_val']:.4f}"
        bar.set_postfix(shown)
        bar.update(1)
    bar.close()
    trainable.load_state_dict(state["best"])
    return FitResult(
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val=None if state["best_val"] is None else sign * state["best_val"],
        monitor=key if validate is not None else None,
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
    if len(y) == 0:
        raise ValueError("y is empty: nothing to score")
    correct = sum(
        int((logits_fn(x[i : i + chunk_size]).argmax(-1) == y[i : i + chunk_size]).sum())
        for i in range(0, len(y), chunk_size)
    )
    return correct / len(y)


def _describe_callable(fn: Callable) -> str:
    """fn as a checkpoint's config holds it: the same in every process (no memory address)
    for a named function or a ``functools.partial`` of one; otherwise its repr.

    >>> _describe_callable(functools.partial(pgd_batch, eps=2.0))
    "functools.partial(__main__.pgd_batch, eps=2.0)"
    """
    if isinstance(fn, functools.partial):
        args = [_describe_callable(fn.func), *map(repr, fn.args)]
        args += [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"functools.partial({', '.join(args)})"
    if inspect.isfunction(fn):
        return f"{fn.__module__}.{fn.__qualname__}"
    return repr(fn)


def fit_torch(
    model: nn.Module,
    data,
    *,
    val=None,
    lam: float = 0.0,
    optimizer: OptimizerFactory | PyroOptim | None = None,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int | None = 5,
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    adversary: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    keep: str = "best",
) -> FitResult:
    """Train a plain classifier with mean cross-entropy + the L2 penalty of eq. 6 (Section 3.3).

    :param model: any torch net mapping x (N, ...) to logits (N, C); ``lam`` > 0 needs an
        :class:`~pyro_bnn.nets.MLP` (eq. 6 is defined per layer of units).
    :param data: (x, y) tensors, a Split, Dataset or DataLoader, or the MNIST splits.
    :param val: validation data in any of those forms (default: MNIST's val split).
    :param lam: lambda of eq. 6, >= 0 (:func:`~pyro_bnn.nets.l2_penalty`).
    :param optimizer: a factory ``params -> torch optimizer`` or a Pyro optimiser such as
        ``pyro.optim.Adam({"lr": 1e-2})``; default :func:`sgd`.
    :param batch_size: examples per minibatch (128 in the paper).
    :param max_epochs: the most epochs to run.
    :param patience: epochs without a better validation accuracy before stopping; None
        turns early stopping off. The best epoch's weights are restored.
    :param callbacks: callables called with each epoch's record; True stops the run.
    :param seed: seeds the initial torch RNG and the minibatch order.
    :param device: where to train.
    :param checkpoint: a file to checkpoint every epoch and resume from.
    :param progress: show a tqdm bar.
    :param adversary: adversarial training (Madry et al. 2018): each minibatch x becomes
        ``adversary(model, x, y)`` before the step, e.g. a PGD attack on the model as it is.
        :class:`~pyro_bnn.attacks.PGDAdversary` is one. Its description goes into the
        checkpoint's config without a memory address, so for a run that resumes pass an
        object with a stable repr, a named function or a ``functools.partial`` of one.
    :param keep: the weights returned: 'best', those of the epoch of best validation
        accuracy; 'last', the final epoch's (as Keras' ``fit`` leaves them).

    >>> result = fit_torch(MLP((100, 100, 10)), load_mnist(), lam=1e-4)
    >>> result = fit_torch(net, (x, y), val=(x_val, y_val), patience=None, max_epochs=10)
    """
    check_loop(batch_size, max_epochs, patience, callbacks)
    if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    if adversary is not None and not callable(adversary):
        raise ValueError(f"adversary must be callable (model, x, y) -> x_adv, got {adversary!r}")
    device = check_device(device)
    train, val = training_data(data, val)
    torch.manual_seed(seed)
    model.to(device)
    opt = make_optimizer(optimizer, model.parameters())

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if adversary is not None:
            x = adversary(model, x, y).detach()
        opt.zero_grad(set_to_none=True)
        ce = F.cross_entropy(model(x), y)
        loss = ce + l2_penalty(model, lam) if lam else ce
        loss.backward()
        opt.step()
        return {"loss": loss, "ce": ce}

    validate = None
    if val is not None:
        val = val.to(device)
        validate = lambda: {"val_acc": accuracy_of(model, val.x, val.y)}  # noqa: E731
    config = {
        "model": repr(model),
        "lam": lam,
        "optimizer": optimizer_config(opt),
        "batch_size": batch_size,
        "max_epochs": max_epochs,
        "patience": patience,
        "seed": seed,
    }
    if adversary is not None:  # absent otherwise: older checkpoints keep their config
        config["adversary"] = _describe_callable(adversary)
    if keep != "best":  # likewise
        config["keep"] = keep
    return run_epochs(
        model,
        opt,
        step,
        minibatches(train, batch_size, seed, device),
        validate,
        max_epochs=max_epochs,
        patience=patience if val is not None else None,
        monitor="val_acc",
        callbacks=callbacks,
        checkpoint=checkpoint,
        progress=progress,
        desc=f"{getattr(model, 'arch', type(model).__name__)} lam={lam:g}",
        config=config,
        keep=keep,
    )


def _num_data(train: Split | DataLoader, num_data: int | None) -> int:
    """The training-set size: known for in-memory data and sized datasets, else num_data."""
    if num_data is not None:
        check_positive("num_data", num_data, integer=True)
    if isinstance(train, Split):
        size = len(train)
    elif isinstance(train.dataset, Sized):
        size = len(train.dataset)
    elif num_data is None:
        raise ValueError(
            "data is a DataLoader over an IterableDataset, whose size is unknown: pass "
            "num_data=<the number of training examples>"
        )
    else:
        return num_data
    if num_data is not None and num_data != size:
        raise ValueError(f"num_data must be the training-set size {size}, got {num_data}")
    return size


def fit_svi(
    model: BNN,
    guide,
    data,
    *,
    val=None,
    num_data: int | None = None,
    optimizer: OptimizerFactory | PyroOptim | None = None,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int | None = 5,
    callbacks: Sequence[Callback] = (),
    val_samples: int = 10,
    num_particles: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    engine: str = "auto",
    compile: bool = False,
) -> FitResult:
    """Fit ``guide`` to ``model`` by SVI (Section 2.1, eqs. 3-4); the guide is updated in place.

    The loss is the ELBO per datapoint (:class:`~pyro_bnn.bnn.DatapointELBO`) with
    ``num_particles`` weight samples per step (1, as in the paper). Validation scores the
    mean prediction of ``val_samples`` weight samples (the authors used 10): accuracy for
    classifiers, RMSE for a Gaussian likelihood. The guide keeps its parameters on itself
    during the fit (Pyro's ``module_local_params``, scoped to this call), so several BNNs
    train in one process. The bar shows the epoch means of ELBO, NLL and KL per datapoint.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its guide, e.g. from :func:`~pyro_bnn.guides.make_guide`.
    :param data: (x, y) tensors, a Split, Dataset or DataLoader, or the MNIST splits.
    :param val: validation data (default: MNIST's val split; none for other forms).
    :param num_data: the training-set size, which scales the ELBO; needed only for a
        DataLoader over an IterableDataset, whose size torch cannot tell.
    :param optimizer: a factory ``params -> torch optimizer`` or a Pyro optimiser such as
        ``pyro.optim.Adam({"lr": 1e-2})``; default :func:`sgd`.
    :param batch_size: examples per minibatch (128 in the paper).
    :param max_epochs: the most epochs to run.
    :param patience: epochs without a better validation score before stopping; None turns
        early stopping off. The best epoch's guide is restored.
    :param callbacks: callables called with each epoch's record; True stops the run.
    :param val_samples: weight samples averaged for the validation prediction.
    :param num_particles: weight samples per ELBO estimate.
    :param seed: seeds Pyro's RNG and the minibatch order.
    :param device: where to train.
    :param checkpoint: a file to checkpoint every epoch and resume from.
    :param progress: show a tqdm bar.
    :param engine: 'pyro' runs Pyro's Trace_ELBO; 'stack' the fused step of
        :func:`~pyro_bnn.stack.fit_stack` (a stack of one), which takes a BayesianMLP with
        AutoSoftplusNormal, a categorical likelihood, one i.i.d. ScaleMixtureNormal or Normal
        prior, one particle and in-memory data; 'auto' picks 'stack' where it can.
    :param compile: with the stack engine, fuse its weight draw with ``torch.compile``.

    >>> bnn = BayesianMLP(); guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    >>> result = fit_svi(bnn, guide, load_mnist())
    >>> result = fit_svi(bnn, guide, (x, y), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    """
    if not isinstance(model, BNN):
        raise ValueError(f"model must be a pyro_bnn BNN, got {type(model).__name__}")
    check_loop(batch_size, max_epochs, patience, callbacks)
    check_positive("val_samples", val_samples, integer=True)
    check_positive("num_particles", num_particles, integer=True)
    if engine not in ("auto", "pyro", "stack"):
        raise ValueError(f"engine must be 'auto', 'pyro' or 'stack', got {engine!r}")
    device = check_device(device)
    train, val = training_data(data, val)
    n = _num_data(train, num_data)
    problem = stack_problem(model, guide)
    if num_particles > 1:
        problem = problem or "num_particles must be 1"
    if isinstance(train, DataLoader):
        problem = problem or "data must be in memory, not a DataLoader"
    if engine == "stack" and problem:
        raise ValueError(f"engine='stack' cannot fit this model: {problem}")
    if engine != "pyro" and problem is None:
        return fit_stack(
            [model],
            [guide],
            train,
            val=val,
            seeds=[seed],
            optimizer=optimizer,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            callbacks=callbacks,
            val_samples=val_samples,
            device=device,
            checkpoints=[checkpoint],
            compile=compile,
            progress=progress,
        )[0]
    check_split(model, train, "data")
    if val is not None:
        check_split(model, val, "val")
        val = val.to(device)
    regression = isinstance(model.likelihood, Gaussian)
    with local_params(model, guide):
        pyro.set_rng_seed(seed)
        init_guide(model, guide)
        guide.to(device)
        model.to(device)
        opt = make_optimizer(optimizer, guide.parameters())
        elbo = DatapointELBO(
            n,
            num_particles=num_particles,
            vectorize_particles=num_particles > 1,
            max_plate_nesting=1,
        )

        def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            opt.zero_grad(set_to_none=True)
            loss = elbo.differentiable_loss(model, guide, x, y, num_data=n)
            loss.backward()
            opt.step()
            return elbo.parts

        def validate() -> dict[str, float]:
            pred = predictive(model, sample_posterior(model, guide, val_samples), val.x)
            if regression:
                rmse = (pred[0].mean(0) - val.y).square().mean().sqrt()
                return {"val_rmse": float(rmse)}
            return {"val_acc": float((pred.mean(0).argmax(-1) == val.y).double().mean())}

        config = {
            "model": repr(model.net),
            "prior": repr(model.prior),
            "likelihood": repr(model.likelihood),
            "guide": type(guide).__name__,
            "optimizer": optimizer_config(opt),
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "patience": patience,
            "val_samples": val_samples,
            "num_particles": num_particles,
            "seed": seed,
        }
        # inputs were checked above; validation off saves ~10% per step
        with pyro.validation_enabled(False):
            return run_epochs(
                guide,
                opt,
                step,
                minibatches(train, batch_size, seed, device),
                None if val is None else validate,
                max_epochs=max_epochs,
                patience=patience if val is not None else None,
                monitor="-val_rmse" if regression else "val_acc",
                callbacks=callbacks,
                checkpoint=checkpoint,
                progress=progress,
                config=config,
                desc=f"SVI {getattr(model, 'arch', type(model.net).__name__)} "
                f"{type(guide).__name__}",
            )

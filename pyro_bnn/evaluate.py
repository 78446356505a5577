"""The one evaluation harness: every model enters as a function from inputs to probabilities.

A *prob function* maps x (N, D) to class probabilities (N, C), or to (R, N, C) when it
makes R independent stochastic predictions at once (a BNN drawing R weight samples).
The harness scores accuracy, NLL and ECE per run and reports mean and standard deviation
over runs, plus the mean uncertainty (entropy, expected entropy, mutual information) of the
stacked runs; :func:`detect` scores how well an uncertainty measure flags unusual inputs.
A regression model enters as a function from x to a Gaussian ``(loc, scale)``.
Results come back as dicts, and as pandas DataFrames from :func:`evaluate_many`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .data import Split
from .uncertainty import MEASURES, auroc, uncertainty

__all__ = [
    "GaussianFn",
    "ProbFn",
    "accuracy",
    "as_probs",
    "ece",
    "detect",
    "evaluate",
    "evaluate_many",
    "nll",
    "run_probs",
    "write_table",
]

ProbFn = Callable[[torch.Tensor], torch.Tensor]  # x (N, D) -> probs (N, C) or (R, N, C)
GaussianFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # x -> (loc, scale)
EvalSet = Split | tuple[torch.Tensor, torch.Tensor]


def as_probs(logits_fn: Callable[[torch.Tensor], torch.Tensor], chunk_size: int = 10_000) -> ProbFn:
    """Wrap a logits model (a plain ``nn.Module``) as a prob function, chunked, no grad.

    :param logits_fn: x (N, D) -> logits (N, C).
    :param chunk_size: inputs per call of logits_fn.

    >>> probs = as_probs(net)(data.test.x)  # (10000, 10)
    """

    @torch.no_grad()
    def probs(x: torch.Tensor) -> torch.Tensor:
        # range(0, max(len(x), 1)): an empty x still makes one call, so (0, C) comes back
        return torch.cat(
            [
                logits_fn(x[i : i + chunk_size]).softmax(-1)
                for i in range(0, max(len(x), 1), chunk_size)
            ]
        )

    return probs


def _check(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if probs.dim() == 2:
        probs = probs.unsqueeze(0)
    if probs.dim() != 3 or probs.shape[1] != len(y):
        raise ValueError(
            f"probs must be (N, C) or (R, N, C) with N={len(y)}, got {tuple(probs.shape)}"
        )
    if y.dtype != torch.long or y.dim() != 1:
        raise ValueError(f"y must be a 1-d int64 tensor of labels, got {y.dtype} {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= probs.shape[-1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[-1]}), got [{y.min()}, {y.max()}]")
    return probs


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-run accuracy: (R,).

    :param probs: (R, N, C) or (N, C) class probabilities.
    :param y: (N,) int64 labels.

    >>> accuracy(single_sample_fn(bnn, guide, 100)(x), y).mean()
    """
    probs = _check(probs, y)
    return (probs.argmax(-1) == y).double().mean(-1)


def nll(probs: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-run mean negative log-likelihood in nats: (R,).

    :param probs: (R, N, C) or (N, C) class probabilities.
    :param y: (N,) int64 labels.
    :param eps: floor on the true class's probability before the log.

    >>> nll(as_probs(net)(x), y)  # (1,)
    """
    probs = _check(probs, y)
    picked = probs.gather(-1, y.expand(probs.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    return -picked.double().clamp_min(eps).log().mean(-1)


def ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Per-run expected calibration error over equal-width confidence bins: (R,).

    :param probs: (R, N, C) or (N, C) class probabilities.
    :param y: (N,) int64 labels.
    :param n_bins: confidence bins on [0, 1].

    >>> ece(as_probs(net)(x), y, n_bins=10)
    """
    probs = _check(probs, y)
    runs, n, _ = probs.shape
    conf, pred = probs.double().max(-1)
    correct = (pred == y).double()
    bins = (conf * n_bins).long().clamp_(0, n_bins - 1) + n_bins * torch.arange(
        runs, device=probs.device
    ).unsqueeze(-1)
    gap = torch.bincount(bins.flatten(), (conf - correct).flatten(), minlength=runs * n_bins)
    return (gap.abs() / max(n, 1)).view(runs, n_bins).sum(-1)


def _stack_probs(outs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([probs.unsqueeze(0) if probs.dim() == 2 else probs for probs in outs])


def run_probs(predict: ProbFn, x: torch.Tensor, runs: int = 1) -> torch.Tensor:
    """Call ``predict`` ``runs`` times and stack every run: (R_total, N, C).

    :param predict: prob function, x (N, D) -> (N, C) or (R, N, C).
    :param x: (N, D) inputs.
    :param runs: calls of predict.

    >>> probs = run_probs(mean_fn(bnn, guide), x, runs=1)  # (1, N, C)
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    return _stack_probs([predict(x) for _ in range(runs)])


def _gaussian_draws(outs: list, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(loc, scale)`` outputs of every run into float64 (R, N) each."""
    n = len(y)
    if not y.is_floating_point() or y.dim() != 1:
        raise ValueError(f"y must be a 1-d float tensor of targets, got {y.dtype} {tuple(y.shape)}")
    locs, scales = [], []
    for out in outs:
        if not isinstance(out, tuple) or len(out) != 2:
            raise ValueError("predict must return (loc, scale) on every run, or probs on every run")
        loc, scale = out
        if not isinstance(loc, torch.Tensor) or not isinstance(scale, torch.Tensor):
            raise ValueError("loc and scale must be tensors")
        no_draws = loc.dim() == 2 and loc.shape[0] == 0
        if loc.dim() not in (1, 2) or loc.shape[-1] != n or no_draws:
            raise ValueError(f"loc must be (N,) or (R, N) with N={n}, got {tuple(loc.shape)}")
        if scale.shape != loc.shape:
            raise ValueError(
                f"scale must have loc's shape {tuple(loc.shape)}, got {tuple(scale.shape)}"
            )
        locs.append(loc.double() if loc.dim() == 2 else loc.double().unsqueeze(0))
        scales.append(scale.double() if scale.dim() == 2 else scale.double().unsqueeze(0))
    loc, scale = torch.cat(locs), torch.cat(scales)  # loc, scale: (R, N)
    if not torch.isfinite(loc).all():
        raise ValueError("loc must be finite")
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError("scale must be finite and > 0")
    return loc, scale


def _evaluate_gaussian(outs: list, y: torch.Tensor) -> dict:
    loc, scale = _gaussian_draws(outs, y)  # loc, scale: (R, N)
    target = y.to(loc.device).double()  # target: (N,)
    draws = loc.shape[0]
    mean = loc.mean(0)  # mean: (N,)
    # mixture variance: mean of the draws' variances plus the variance of their means
    sd = ((scale**2).mean(0) + loc.var(0, unbiased=False)).sqrt()
    log_density = torch.distributions.Normal(loc, scale).log_prob(target)  # (R, N)
    mixture = torch.logsumexp(log_density, 0) - math.log(draws)  # (N,)
    return {
        "n": len(y),
        "runs": draws,
        "rmse": float((mean - target).pow(2).mean().sqrt()),
        "nll": float(-mixture.mean()),
        "coverage_95": float(((target - mean).abs() <= 1.96 * sd).double().mean()),
    }


def evaluate(
    predict: ProbFn | GaussianFn, x: torch.Tensor, y: torch.Tensor, *, runs: int = 1
) -> dict:
    """Score ``predict`` on (x, y): a classifier by accuracy, NLL, ECE and uncertainty.

    Classification (``predict`` returns probabilities (N, C) or (R, N, C)): ``acc``,
    ``nll`` and ``ece`` are means over the R runs, with ``_std`` their spread; ``entropy``,
    ``expected_entropy`` and ``mutual_information`` (nats, see :mod:`pyro_bnn.uncertainty`)
    are means over the N inputs of the stacked (R, N, C) predictions, so a deterministic net
    has mutual information 0.

    Regression (``predict`` returns a tuple ``(loc, scale)``, each (N,) or (R, N): R draws
    of a Gaussian predictive mean and noise sd; ``y`` float (N,)): the prediction is the
    equal mixture of the R Gaussians. ``rmse`` is of the mixture mean, ``nll`` the mean
    over N of -log mixture density (nats), and ``coverage_95`` the fraction of ``y`` within
    mean +- 1.96 total sd, a Gaussian approximation of the mixture's central 95% interval.

    :param predict: prob function or Gaussian function of x.
    :param x: inputs, (N, ...).
    :param y: int64 labels (N,), or float targets (N,) for regression.
    :param runs: how many times to call ``predict`` (without autograd); R counts every
        draw of every call.

    >>> evaluate(as_probs(net), data.test.x, data.test.y)["acc"]
    >>> evaluate(lambda x: (net(x).squeeze(-1), torch.ones(len(x))), x, y_float)["rmse"]
    """
    if x.dim() < 2 or len(x) != len(y):
        raise ValueError(f"x must be (N, ...) with N={len(y)}, got {tuple(x.shape)}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    with torch.no_grad():
        outs = [predict(x) for _ in range(runs)]
    if isinstance(outs[0], tuple):
        return _evaluate_gaussian(outs, y)
    if any(isinstance(out, tuple) for out in outs):
        raise ValueError("predict must return (loc, scale) on every run, or probs on every run")
    probs = _stack_probs(outs)  # probs: (R, N, C)
    row = {"n": len(y), "runs": probs.shape[0]}
    for name, metric in (("acc", accuracy), ("nll", nll), ("ece", ece)):
        values = metric(probs, y)
        row[name] = float(values.mean())
        row[f"{name}_std"] = float(values.std()) if len(values) > 1 else 0.0
    for name in ("entropy", "expected_entropy", "mutual_information"):
        row[name] = float(uncertainty(probs, name).mean())
    return row


def detect(
    predict: ProbFn,
    x_in: torch.Tensor,
    x_out: torch.Tensor,
    *,
    measure: str = "mutual_information",
    runs: int = 1,
) -> dict:
    """How well an uncertainty measure tells ``x_out`` (positives) from ``x_in``.

    ``auroc`` is the probability that a random input of ``x_out`` is more uncertain than a
    random one of ``x_in`` (ties 1/2): 0.5 is chance, 1.0 perfect detection.

    :param predict: prob function, x (N, D) -> (N, C) or (R, N, C).
    :param x_in: clean inputs, (N_in, D).
    :param x_out: inputs to flag, e.g. adversarial or noise, (N_out, D).
    :param measure: a key of :data:`pyro_bnn.uncertainty.MEASURES`.
    :param runs: how many times to call ``predict`` on each set.
    :returns: ``measure``, ``auroc``, ``in_mean``, ``out_mean`` (mean measure on each set),
        ``n_in``, ``n_out``.

    >>> detect(single_sample_fn(bnn, guide, 100), test.x, x_adv)["auroc"]
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for name, x in (("x_in", x_in), ("x_out", x_out)):
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) tensor, got {tuple(x.shape)}")
    scores = {}
    for name, x in (("in", x_in), ("out", x_out)):
        outs = [predict(x) for _ in range(runs)]
        if any(isinstance(out, tuple) for out in outs):
            raise ValueError("predict must return class probabilities for detect, got a tuple")
        probs = _stack_probs(outs)  # probs: (R, N, C)
        if probs.shape[1] != len(x):
            raise ValueError(f"predict must give (R, {len(x)}, C), got {tuple(probs.shape)}")
        scores[name] = uncertainty(probs, measure)  # (N,)
    return {
        "measure": measure,
        "auroc": auroc(scores["in"], scores["out"]),
        "in_mean": float(scores["in"].mean()),
        "out_mean": float(scores["out"].mean()),
        "n_in": len(x_in),
        "n_out": len(x_out),
    }


def evaluate_many(
    models: Mapping[str, ProbFn],
    sets: Mapping[str, EvalSet],
    *,
    runs: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every model on every set with :func:`evaluate`; one row per (model, set).

    :param models: {name: prob function}.
    :param sets: {name: Split or (x, y)}.
    :param runs: calls of each prob function per set.
    :param progress: show a tqdm bar.

    >>> df = evaluate_many({"mlp": as_probs(net)}, {"test": data.test}, progress=False)
    """
    rows = []
    pairs = [(m, s) for m in models for s in sets]
    for model_name, set_name in tqdm(pairs, desc="evaluate", disable=not progress, leave=False):
        data = sets[set_name]
        x, y = (data.x, data.y) if isinstance(data, Split) else data
        rows.append(
            {"model": model_name, "set": set_name, **evaluate(models[model_name], x, y, runs=runs)}
        )
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, stem: str | os.PathLike, floatfmt: str = ".4f") -> None:
    """Write ``stem.csv`` and ``stem.md`` atomically.

    :param df: the table.
    :param stem: the path without its suffix.
    :param floatfmt: the format of floats in the markdown table.

    >>> write_table(df, "runs/results/table2")  # table2.csv and table2.md
    """
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), lambda tmp: df.to_csv(tmp, index=False))
    text = df.to_markdown(index=False, floatfmt=floatfmt) + "\n"
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text))

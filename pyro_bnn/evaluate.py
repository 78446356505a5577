"""The one evaluation harness: every model enters as a function from inputs to probabilities.

A *prob function* maps x (N, D) to class probabilities (N, C), or to (R, N, C) when it
makes R independent stochastic predictions at once (a BNN drawing R weight samples).
The harness scores accuracy, NLL and ECE per run and reports mean and standard deviation
over runs. Results come back as pandas DataFrames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .data import Split

__all__ = [
    "ProbFn",
    "accuracy",
    "as_probs",
    "ece",
    "evaluate",
    "evaluate_many",
    "nll",
    "run_probs",
    "write_table",
]

ProbFn = Callable[[torch.Tensor], torch.Tensor]
EvalSet = Split | tuple[torch.Tensor, torch.Tensor]


def as_probs(logits_fn: Callable[[torch.Tensor], torch.Tensor], chunk_size: int = 10_000) -> ProbFn:
    """Wrap a logits model (a plain ``nn.Module``) as a prob function, chunked, no grad."""

    @torch.no_grad()
    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [logits_fn(x[i : i + chunk_size]).softmax(-1) for i in range(0, len(x), chunk_size)]
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
    """Per-run accuracy. probs: (R, N, C) or (N, C); y: (N,) -> (R,)."""
    probs = _check(probs, y)
    return (probs.argmax(-1) == y).double().mean(-1)


def nll(probs: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-run mean negative log-likelihood in nats -> (R,)."""
    probs = _check(probs, y)
    picked = probs.gather(-1, y.expand(probs.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    return -picked.double().clamp_min(eps).log().mean(-1)


def ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Per-run expected calibration error, equal-width confidence bins -> (R,)."""
    probs = _check(probs, y)
    runs, n, _ = probs.shape
    conf, pred = probs.double().max(-1)
    correct = (pred == y).double()
    bins = (conf * n_bins).long().clamp_(0, n_bins - 1) + n_bins * torch.arange(
        runs, device=probs.device
    ).unsqueeze(-1)
    gap = torch.bincount(bins.flatten(), (conf - correct).flatten(), minlength=runs * n_bins)
    return (gap.abs() / max(n, 1)).view(runs, n_bins).sum(-1)


def run_probs(predict: ProbFn, x: torch.Tensor, runs: int = 1) -> torch.Tensor:
    """Call ``predict`` ``runs`` times and stack every run: (R_total, N, C)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    outs = []
    for _ in range(runs):
        probs = predict(x)
        outs.append(probs.unsqueeze(0) if probs.dim() == 2 else probs)
    return torch.cat(outs)


def evaluate(predict: ProbFn, x: torch.Tensor, y: torch.Tensor, *, runs: int = 1) -> dict:
    """Accuracy, NLL and ECE of ``predict`` on (x, y), mean and std over runs.

    >>> evaluate(as_probs(net), data.test.x, data.test.y)["acc"]
    """
    if x.dim() != 2 or len(x) != len(y):
        raise ValueError(f"x must be (N, D) with N={len(y)}, got {tuple(x.shape)}")
    probs = run_probs(predict, x, runs)
    row = {"n": len(y), "runs": probs.shape[0]}
    for name, metric in (("acc", accuracy), ("nll", nll), ("ece", ece)):
        values = metric(probs, y)
        row[name] = float(values.mean())
        row[f"{name}_std"] = float(values.std()) if len(values) > 1 else 0.0
    return row


def evaluate_many(
    models: Mapping[str, ProbFn],
    sets: Mapping[str, EvalSet],
    *,
    runs: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every model on every set; one row per (model, set), long format."""
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
    """Write ``stem.csv`` and ``stem.md`` atomically."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), lambda tmp: df.to_csv(tmp, index=False))
    text = df.to_markdown(index=False, floatfmt=floatfmt) + "\n"
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text))

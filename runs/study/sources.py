"""The 12 source nets of Section 3.3 that the attack sets are made on.

FC-10, FC-200-200-10 and FC-1200-1200-10, each trained with the eq. 6 penalty
lambda in {0, 1e-4, 1e-2, 1}, by the same trainer and artifacts as the plain baselines
(:func:`runs.study.zoo.train_baseline` with ``kind="source"``).

>>> sources = train_sources(data, root="runs/artifacts")
>>> source_table(sources, data)
>>> attack_sources(sources, data, protocol="rigorous")  # their attack sets, one row each
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from pyro_bnn.artifacts import DEFAULT_ROOT
from pyro_bnn.attacks import distortion
from pyro_bnn.data import MNIST
from pyro_bnn.evaluate import as_probs, evaluate
from pyro_bnn.nets import MLP, arch_name, parse_arch

from . import paper
from .attack_sets import attack_config, attack_set
from .config import PLAIN, TrainConfig
from .naming import baseline_name
from .zoo import train_baseline

__all__ = ["Source", "as_source", "attack_sources", "source_table", "train_sources"]

SUMMARY_KEYS = ("n", "success_rate", "n_success", "distortion", "distortion_01", "median_l2",
                "median_l2_01", "n_zero", "distortion_nonzero")  # fmt: skip


@dataclass
class Source:
    """A trained source net: its name, arch, lambda, the net and its artifact's meta."""

    name: str
    arch: str
    lam: float
    net: MLP
    meta: dict

    @property
    def fingerprint(self) -> dict:
        """What identifies this trained net: its training config and when it was saved."""
        return {"config": self.meta["config"], "saved_at": self.meta["saved_at"]}


def train_sources(
    data: MNIST,
    *,
    archs: Sequence[str] = paper.SOURCE_ARCHS,
    lams: Sequence[float] = paper.LAMBDAS,
    train: TrainConfig = PLAIN,
    root: str | os.PathLike = DEFAULT_ROOT,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    kind: str = "source",
) -> list[Source]:
    """Train (or reuse) every arch x lambda source net under ``<root>/<kind>/`` ('source',
    or 'paper-source' for the paper protocol's own)."""
    if not archs or not lams:
        raise ValueError(f"archs and lams must be non-empty, got {archs!r} and {lams!r}")
    sources = []
    for arch in archs:
        name = arch_name(parse_arch(arch))
        for lam in lams:
            net, meta = train_baseline(
                name,
                lam,
                data,
                train=train,
                root=root,
                kind=kind,
                seed=seed,
                device=device,
                progress=progress,
                log=log,
            )
            sources.append(as_source(name, lam, seed, net, meta))
    return sources


def as_source(arch: str, lam: float, seed: int, net: MLP, meta: dict) -> Source:
    """A trained source net (:func:`runs.study.zoo.train_baseline`'s net and meta), frozen."""
    net.eval().requires_grad_(False)
    return Source(baseline_name(arch, lam, seed), arch, lam, net, meta)


def source_table(sources: Sequence[Source], data: MNIST) -> pd.DataFrame:
    """One row per source: val/test accuracy, epochs, training wall time, Szegedy's error."""
    rows = []
    for src in sources:
        device = next(src.net.parameters()).device
        acc = {
            split: evaluate(as_probs(src.net), part.x, part.y)["acc"]
            for split, part in (("val", data.val.to(device)), ("test", data.test.to(device)))
        }
        rows.append(
            {
                "source": src.name,
                "arch": src.arch,
                "lambda": src.lam,
                "val_acc": acc["val"],
                "test_acc": acc["test"],
                "test_err": 1 - acc["test"],
                "szegedy_test_err": paper.SZEGEDY_TEST_ERROR.get((src.arch, src.lam)),
                "epochs": src.meta["epochs"],
                "best_epoch": src.meta["best_epoch"],
                "train_s": src.meta["wall_time_s"],
            }
        )
    return pd.DataFrame(rows)


def attack_sources(
    sources: Sequence[Source],
    data: MNIST,
    *,
    protocol: str = "rigorous",
    split: str = "test",
    limit: int | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **settings,
) -> pd.DataFrame:
    """Build (or reuse) the attack set of every source; one summary row per source.

    Each set is :func:`runs.study.attack_sets.attack_set` under ``<root>/attack-<protocol>/``;
    ``settings`` go to the attack.
    """
    steps = attack_config(protocol, **settings)["steps"]  # fails fast on bad settings
    rows = []
    for src in sources:
        tensors, meta = attack_set(
            src.name,
            src.net,
            data,
            protocol=protocol,
            split=split,
            limit=limit,
            root=root,
            fingerprint=src.fingerprint,
            device=device,
            progress=progress,
            log=log,
            **settings,
        )
        summary = distortion(tensors["r"], tensors["success"])
        rows.append(
            {
                "source": src.name,
                "protocol": protocol,
                "split": split,
                "steps": steps,
                **{k: summary[k] for k in SUMMARY_KEYS},
                "attack_s": meta["wall_time_s"],
            }
        )
    return pd.DataFrame(rows)

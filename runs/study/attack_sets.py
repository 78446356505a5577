"""Attack sets as artifacts: the perturbations one protocol finds against one model.

An attack set's folder, ``<root>/attack-<protocol>/<name>_<hash>/`` (:mod:`runs.study.naming`),
holds tensors.pt (r, success, miss_rate, y, index) and meta.json (the full config and a
distortion summary). A rerun with the same config reuses it, and any multiplier of r can
be evaluated later without attacking again (:func:`pyro_bnn.attacks.perturb`).

Protocols (one string each, resolved by :func:`get_protocol`):
- 'rigorous': :func:`pyro_bnn.attacks.min_norm_attack` (signed, boxed, per-example search);
- 'paper': :func:`pyro_bnn.attacks.paper_attack` (the authors' code);
- 'eot': :func:`pyro_bnn.attacks.eot_attack` (white box on a stochastic model).

>>> tensors, meta = attack_set("FC-10_lam0_seed0", net, load_mnist(), protocol="rigorous")
>>> x_adv = perturb(data.test.x[tensors["index"]], tensors["r"], scale=1.5)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

import torch

from pyro_bnn.artifacts import DEFAULT_ROOT, cached
from pyro_bnn.attacks import (
    AttackResult,
    ModelFn,
    SampleFn,
    eot_attack,
    min_norm_attack,
    paper_attack,
)
from pyro_bnn.data import MNIST

from .naming import artifact_path, attack_kind

__all__ = ["PROTOCOLS", "attack_config", "attack_set", "get_protocol"]

PROTOCOLS: dict[str, Callable[..., AttackResult]] = {
    "rigorous": min_norm_attack,
    "paper": paper_attack,
    "eot": eot_attack,
}
# settings added after attack sets were first stored: left out of a config at these
# defaults, so that those sets keep their hash
LATER_DEFAULTS = {"n_targets": 0}


def get_protocol(name: str) -> Callable[..., AttackResult]:
    """The attack function of a protocol name."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def attack_config(protocol: str, **settings) -> dict:
    """A protocol's full attack settings: its defaults, updated by ``settings``, less those
    of :data:`LATER_DEFAULTS` at their default.

    >>> attack_config("paper", steps=100)["lr"]
    0.01
    """
    funcs = [min_norm_attack, eot_attack] if protocol == "eot" else [get_protocol(protocol)]
    defaults = {}
    for func in funcs:
        for name, param in inspect.signature(func).parameters.items():
            if param.kind is param.KEYWORD_ONLY and name not in ("progress", "judge"):
                defaults[name] = param.default
    if protocol == "eot":
        del defaults["output"]  # eot_attack sets it
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {protocol} attack settings {unknown}; known: {sorted(defaults)}")
    for name in ("steps", "batch_size"):  # the settings every protocol has
        value = settings.get(name, defaults[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    full = defaults | settings
    for name, default in LATER_DEFAULTS.items():
        if type(full.get(name)) is type(default) and full[name] == default:
            del full[name]
    return full


def attack_set(
    name: str,
    fn: ModelFn | SampleFn,
    data: MNIST,
    *,
    protocol: str = "rigorous",
    split: str = "test",
    limit: int | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
    fingerprint: dict | str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **settings,
) -> tuple[dict, dict]:
    """Build, or reuse, the attack set of one model under ``<root>/attack-<protocol>/``.

    :param name: the model's name, e.g. 'FC-10_lam0_seed0'.
    :param fn: the model function (for 'eot' the sample function).
    :param fingerprint: whatever identifies the trained model, so that a retrained model
        gets a new set.
    :param limit: attack only the first ``limit`` examples of ``split``.
    :param log: gets one line saying whether the set was reused or computed, and where.
    :param settings: the attack's (see :func:`attack_config`).
    :returns: (tensors, meta). tensors: r (N, 784) on the /126 scale, zero where the
        attack failed; success (N,) bool; miss_rate (N,); y (N,) int64; index (N,) rows of
        the split. meta: config (name, fingerprint, protocol, split, n and the full attack
        settings), summary (:func:`pyro_bnn.attacks.distortion`), wall_time_s.
    """
    attack = get_protocol(protocol)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    part = data.split(split).head(limit)
    full = attack_config(protocol, **settings)
    config = {"source": name, "fingerprint": fingerprint, "protocol": protocol}
    config |= {"split": split, "n": len(part), "attack": full}

    def compute() -> tuple[dict, dict]:
        x, y = part.x.to(device), part.y.to(device)
        result = attack(fn, x, y, progress=progress, **full)
        tensors = result.tensors() | {"y": part.y.cpu(), "index": torch.arange(len(part))}
        return tensors, {"summary": result.distortion()}

    path = artifact_path(root, attack_kind(protocol), name, config)
    return cached(path, config, compute, log=log)

"""What the study's artifacts are called and where they live.

An artifact's folder is ``<root>/<kind>/<name>_<hash>/``. The name says what it holds
(``FC-100-100-10_lam0.0001_seed0``, ``FC-100-100-10_rho-3_seed0``); the hash is the first
8 hex digits of the SHA-256 of its config. A changed setting therefore gets a folder of its
own, and never overwrites a finished artifact; the same config finds the same folder.

>>> artifact_path("runs/artifacts", "baseline", baseline_name("FC-10", 0.0, 0), config)
# runs/artifacts/baseline/FC-10_lam0_seed0_<8 hex digits>
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from pyro_bnn.artifacts import artifact_dir

__all__ = [
    "artifact_path",
    "attack_kind",
    "baseline_name",
    "bnn_name",
    "config_hash",
    "table_name",
    "without_seed",
]


def baseline_name(arch: str, lam: float, seed: int) -> str:
    """Name of a plain net, e.g. 'FC-100-100-10_lam0.0001_seed0'."""
    return f"{arch}_lam{lam:g}_seed{seed}"


def bnn_name(arch: str, rho_init: float, seed: int, guide: str = "softplus-normal") -> str:
    """Name of a BNN, e.g. 'FC-100-100-10_rho-3_seed0' (other guides add '_<guide>')."""
    suffix = "" if guide == "softplus-normal" else f"_{guide}"
    return f"{arch}_rho{rho_init:g}_seed{seed}{suffix}"


def table_name(table: str, seed: int, protocol: str | None = None) -> str:
    """Name of a table, e.g. 'table1_seed0' or 'paper_table2_seed0'."""
    return f"{protocol + '_' if protocol else ''}{table}_seed{seed}"


def attack_kind(protocol: str) -> str:
    """The artifact kind of a protocol's attack sets, e.g. 'attack-rigorous'."""
    return f"attack-{protocol}"


def without_seed(name: str) -> str:
    """The name with its '_seed<N>' ending dropped, to pool one net over seeds."""
    return re.sub(r"_seed\d+$", "", name)


def config_hash(config: Mapping) -> str:
    """First 8 hex digits of the SHA-256 of the config as sorted JSON."""
    text = json.dumps(dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def artifact_path(root: str | os.PathLike, kind: str, name: str, config: Mapping) -> Path:
    """``<root>/<kind>/<name>_<hash of config>``."""
    return artifact_dir(root, kind, f"{name}_{config_hash(config)}")

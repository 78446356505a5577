"""The results files: every table combined over seeds, written as CSV and markdown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pyro_bnn.evaluate import write_table

from . import intervals
from .naming import without_seed

__all__ = ["KEYS", "combine", "whole_numbers", "write_tables"]

KEYS = [  # the columns that say which cell a row is; every other numeric column is averaged
    "kind",
    "attack",
    "param",
    "split",
    "source",
    "arch",
    "lam",
    "multiplier",
    "N",
    "scope",
    "rate",
    "set",
    "tensor",
    "paper",
]


def combine(per_seed: list[dict[str, pd.DataFrame]], seeds: list[int]) -> dict[str, pd.DataFrame]:
    """Mean over seeds of every numeric column; acc_seed_std is the spread across seeds.
    The claims' per-image values instead become intervals (:func:`runs.study.intervals.summarise`).

    :param per_seed: one {table name: long-format table} per seed, in the order of seeds.
    :returns: {table name: one table}, with columns seeds, acc_seed_std and, where the
        paper has a value, diff = acc - paper.
    """
    frames = {}
    for name in per_seed[0]:
        if name.endswith("intervals"):  # per-image values: pooled by their own rule
            frames[name] = intervals.summarise([run[name] for run in per_seed])
            continue
        long = pd.concat([run[name].assign(seed=s) for run, s in zip(per_seed, seeds)])
        for col in ("source", "set"):  # a source net's name carries its seed: drop it
            if col in long.columns:
                long[col] = long[col].map(without_seed)
        keys = [k for k in KEYS if k in long.columns]
        grouped = long.groupby(keys, dropna=False, sort=False)
        frame = grouped.mean(numeric_only=True).drop(columns="seed").reset_index()
        if "acc" in long.columns:
            frame["acc_seed_std"] = grouped["acc"].std().to_numpy() if len(seeds) > 1 else 0.0
            if "paper" in frame.columns:
                frame["diff"] = frame["acc"] - frame["paper"]
        frame["seeds"] = len(seeds)
        frames[name] = frame
    return frames


def whole_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of whole numbers back to int (averaging over seeds made them float)."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if (
            values.dtype.kind == "f"
            and values.notna().all()
            and (values % 1 == 0).all()
            and col not in ("acc", "paper", "param", "lam", "rate", "multiplier")
        ):
            frame[col] = values.astype(int)
    return frame


def write_tables(frames: dict[str, pd.DataFrame], results: Path, protocols: list[str]) -> None:
    """``<results>/<name>.csv`` and ``.md`` for every table; Table 1, which no protocol
    changes, also beside each protocol's tables."""
    for name, frame in frames.items():
        stems = [results / name]
        if name == "table1":
            stems += [results / protocol / name for protocol in protocols]
        for stem in stems:
            write_table(whole_numbers(frame), stem, floatfmt=".4g")

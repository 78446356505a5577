"""The results files: every table combined over seeds, written as CSV and markdown, and
each seed's own tables kept under ``<results>/seeds/<seed>/`` so that seeds run in
different sessions (or on different machines) combine later."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import pandas as pd

from pyro_bnn.artifacts import atomic_write
from pyro_bnn.evaluate import write_table

from . import intervals
from .naming import without_seed

__all__ = [
    "KEYS",
    "combine",
    "load_seeds",
    "other_seeds",
    "save_seed",
    "whole_numbers",
    "write_tables",
]

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


def save_seed(frames: dict[str, pd.DataFrame], results: Path, seed: int, info: dict) -> None:
    """One seed's own tables as ``<results>/seeds/<seed>/<name>.csv.gz``, with ``seed.json``
    (``info``: the profile, protocols, commit, date, machine and compute seconds), written
    last so that a killed save leaves no seed that looks complete.

    :param frames: {table name: that seed's table}, as :func:`runs.study.pipeline.run_seed`
        gives them (names like 'rigorous/table2').
    """
    folder = Path(results) / "seeds" / str(seed)
    (folder / "seed.json").unlink(missing_ok=True)
    for name, frame in frames.items():
        atomic_write(folder / f"{name}.csv.gz", functools.partial(_gzip_csv, frame))
    text = json.dumps(info | {"seed": seed, "tables": list(frames)}, indent=2) + "\n"
    atomic_write(folder / "seed.json", lambda tmp: tmp.write_text(text))


def other_seeds(results: Path, match: dict, ran) -> dict[int, tuple[dict, dict]]:
    """The seeds :func:`load_seeds` finds under ``results`` that were not run now (``ran``),
    said in one line when there are some: {seed: (frames, info)}."""
    found = load_seeds(results, match)
    extra = {seed: found[seed] for seed in sorted(set(found) - set(ran))}
    if extra:
        print(f"combined with the seeds saved in {Path(results) / 'seeds'}: {list(extra)}")
    return extra


def _gzip_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as gzipped CSV, byte for byte the same for the same table (no name or time
    in the gzip header), so that a rerun leaves git nothing to see."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        f.write(frame.to_csv(index=False).encode())


def load_seeds(results: Path, match: dict) -> dict[int, tuple[dict[str, pd.DataFrame], dict]]:
    """The seeds saved by :func:`save_seed` whose ``seed.json`` agrees with ``match`` on
    every key of ``match`` (the profile and protocols): {seed: (frames, info)}.
    A folder without ``seed.json`` (a killed save) is skipped."""
    found = {}
    for meta in sorted(Path(results).glob("seeds/*/seed.json")):
        info = json.loads(meta.read_text())
        if any(info.get(key) != value for key, value in match.items()):
            continue
        frames = {
            name: pd.read_csv(meta.parent / f"{name}.csv.gz", compression="gzip")
            for name in info["tables"]
        }
        found[int(info["seed"])] = (frames, info)
    return found

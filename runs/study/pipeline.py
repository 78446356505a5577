"""The stages of one seed: train the nets, load them, build the attack sets, and compute
every table of both protocols through the one harness. The training workers build each
source net's attack sets right after training it, so the attack-set stage here mostly
reuses them.

Every trained net, attack set and table is an artifact under the profile's root, so a
rerun reuses them (and says so) and a killed run resumes where it stopped. Each table is
computed with Pyro's RNG seeded by the run seed, so a rerun gives the same numbers.

Everything runs on one device ('cpu' or 'cuda'): the training jobs carry it to the
workers (which also attack the source nets there), and the nets, the data, the other
attacks and the tables sit on it in this process.
Artifacts are saved on the CPU and their configs do not name the device, so a run on
either device reuses what the other made.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyro

from pyro_bnn.artifacts import cached
from pyro_bnn.data import MNIST
from pyro_bnn.evaluate import as_probs
from pyro_bnn.predict import ensemble_fn, sampler, single_sample_fn

from . import intervals, paper, plots, tables
from .attack_sets import attack_set
from .config import BNN, PAPER_SOURCE, PLAIN
from .executors import Executor
from .naming import artifact_path, baseline_name, bnn_name, table_name, without_seed
from .profiles import Profile
from .protocols import PROTOCOL_RULES, source_attack_set
from .sources import train_sources
from .training import matched, pool_seed, train_all, training_jobs
from .zoo import CONTROLS, PAPER_SOURCE_KIND, train_baseline, train_bnns

__all__ = ["SeedResult", "Stages", "run_seed"]

# bump a table's version when its code changes, so that a cached table is recomputed
TABLE_VERSIONS = {"attacks": 3, "intervals": 4, "noise": 2, "whitebox": 2}


class Stages:
    """Prints each stage as it starts and ends, and adds up its wall time in ``times``.

    >>> stage = Stages()
    >>> with stage("train nets"): ...
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        stages = self

        class _Stage:
            def __enter__(self):
                print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                took = time.perf_counter() - self.start
                stages.times[name] = stages.times.get(name, 0.0) + took
                if exc[0] is None:
                    print(f"[{time.strftime('%H:%M:%S')}] {name} done in {took:.1f} s", flush=True)

        return _Stage()


@dataclass
class SeedResult:
    """What one seed gives: its tables, example digits per protocol, and the compute
    seconds of every stage (from the artifacts' meta, so a rerun reports the first run's)."""

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    digits: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_seconds(self, label: str, meta: dict) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + float(meta.get("wall_time_s") or 0)


def fingerprint(meta: dict) -> str:
    """What identifies a trained net or attack set in a table's config: when it was saved."""
    return meta["saved_at"]


def load_zoo(
    profile: Profile,
    data: MNIST,
    root: Path,
    seed: int,
    need_pool: bool,
    out,
    device="cpu",
    protocols: Sequence[str] = (),
):
    """The trained nets of one seed (trained before by :func:`runs.study.training.train_all`) on
    ``device``, and their fingerprints; with 'paper' among ``protocols`` and
    ``profile.paper_source_epochs`` set, also the paper protocol's own sources."""
    plain = replace(PLAIN, max_epochs=profile.plain_epochs)
    arch = paper.TABLE1_ARCH
    plains, prints = {}, {}
    for lam in paper.LAMBDAS:
        net, meta = train_baseline(arch, lam, data, train=plain, root=root, seed=seed,
                                   device=device, progress=False)  # fmt: skip
        plains[lam] = net.eval().requires_grad_(False)
        prints[f"plain{lam:g}"] = fingerprint(meta)
        out.add_seconds("baseline", meta)
    sources = train_sources(
        data,
        train=replace(PLAIN, max_epochs=profile.source_epochs),
        root=root,
        seed=seed,
        device=device,
        progress=False,
    )
    for s in sources:
        prints[s.name] = fingerprint(s.meta)
        out.add_seconds(f"source {s.arch}", s.meta)
    paper_sources = []
    if profile.paper_source_epochs is not None and "paper" in protocols:
        paper_sources = train_sources(
            data, train=replace(PAPER_SOURCE, max_epochs=profile.paper_source_epochs),
            root=root, seed=seed, device=device, progress=False, kind=PAPER_SOURCE_KIND,
        )  # fmt: skip
    for s in paper_sources:
        prints[f"paper-{s.name}"] = fingerprint(s.meta)
        out.add_seconds(f"paper source {s.arch}", s.meta)
    bnns = {}
    trained = train_bnns(
        list(paper.RHO_INITS), data, arch=arch, train=replace(BNN, max_epochs=profile.bnn_epochs),
        root=root, seed=seed, device=device, progress=False, compile=profile.compile,
    )  # fmt: skip
    for rho, (bnn, guide, meta) in zip(paper.RHO_INITS, trained):
        bnns[rho] = (bnn, guide.requires_grad_(False))
        prints[f"bnn{rho:g}"] = fingerprint(meta)
        out.add_seconds("bnn", meta)
    controls = {}
    for control in CONTROLS:
        trained = train_bnns(
            list(profile.control_rhos), data, arch=arch, control=control, root=root, seed=seed,
            train=replace(BNN, max_epochs=profile.bnn_epochs), device=device, progress=False,
            compile=profile.compile,
        )  # fmt: skip
        for rho, (bnn, guide, meta) in zip(profile.control_rhos, trained):
            controls[control, rho] = (bnn, guide.requires_grad_(False))
            prints[f"{control}{rho:g}"] = fingerprint(meta)
            out.add_seconds(control, meta)
    matched_nets = {}
    for lam in paper.LAMBDAS:
        net, meta = train_baseline(
            arch, lam, data, train=matched(profile.bnn_epochs), root=root, kind="matched",
            seed=seed, device=device, progress=False,
        )  # fmt: skip
        matched_nets[lam] = net.eval().requires_grad_(False)
        prints[f"matched{lam:g}"] = fingerprint(meta)
        out.add_seconds("matched", meta)
    pool = []
    for k in range(profile.pool if need_pool else 0):
        net, meta = train_baseline(arch, 0.0, data, train=plain, root=root, kind="pool",
                                   seed=pool_seed(seed, k), device=device,
                                   progress=False)  # fmt: skip
        pool.append(net.eval().requires_grad_(False))
        prints[f"pool{k}"] = fingerprint(meta)
        out.add_seconds("pool", meta)
    zoo = tables.Zoo(seed, bnns, plains, sources, pool, controls, matched_nets, paper_sources)
    return zoo, prints


def on_device(tensors: dict, device) -> dict:
    """An attack set's tensors (loaded on the CPU, or just computed) on ``device``."""
    return {k: v.to(device) for k, v in tensors.items()}


def build_attack_sets(
    protocol: str, profile: Profile, zoo, data, root, progress, out, device="cpu"
):
    """The attack set of every source net under one protocol, attacked on ``device`` (or
    reused: a source's worker builds its sets right after training it)."""
    sets, split = [], PROTOCOL_RULES[protocol]["split"]
    for src in zoo.sources_of(protocol):
        tensors, meta = source_attack_set(
            src, protocol, profile, data, root, device=device, progress=progress, log=print
        )
        sets.append(tables.AttackSet(src, on_device(tensors, device), meta, split))
        out.add_seconds(f"attack-{protocol} {src.arch}", meta)
    return sets


def whitebox_sets(profile: Profile, zoo, prints: dict, data, root, progress, device="cpu"):
    """White-box attack sets of every FC-100-100-10 model on ``device``: EOT on the BNNs
    (single-sample rule, and the 10-sample mean of Table 3's BNN), the rigorous attack on
    the baselines. Each comes as (kind, attack, param, the set, the prob function it was
    attacked as); the set's source is the attacked model's name."""
    out = []
    targets = [(rho, 1) for rho in zoo.bnns] + [(paper.TABLE3_RHO_INIT, 10)]
    for rho, ens in targets:
        bnn, guide = zoo.bnns[rho]
        name = bnn_name(paper.TABLE1_ARCH, rho, zoo.seed) + (f"_ens{ens}" if ens > 1 else "")
        tensors, meta = attack_set(
            name,
            sampler(bnn, guide, ens),
            data,
            protocol="eot",
            limit=profile.eot_examples,
            root=root,
            progress=progress,
            log=print,
            fingerprint=prints[f"bnn{rho:g}"],
            device=device,
            steps=profile.eot_steps,
            k=profile.eot_k,
            passes=profile.eot_passes,
        )
        fn = (
            single_sample_fn(bnn, guide, profile.runs)
            if ens == 1
            else ensemble_fn(bnn, guide, ens, runs=max(1, profile.runs // ens))
        )
        kind = "bnn" if ens == 1 else f"bnn-mean{ens}"
        # in tables the seed ends the name, so that seeds pool (runs.study.naming.without_seed)
        label = name if ens == 1 else f"{paper.TABLE1_ARCH}_rho{rho:g}_mean{ens}_seed{zoo.seed}"
        attacked = tables.AttackSet(
            SimpleNamespace(name=label), on_device(tensors, device), meta, "test"
        )
        out.append((kind, f"eot k={profile.eot_k}", rho, attacked, fn))
    for lam, net in zoo.plains.items():
        name = baseline_name(paper.TABLE1_ARCH, lam, zoo.seed)
        tensors, meta = attack_set(
            name,
            net,
            data,
            protocol="rigorous",
            limit=profile.eot_examples,
            root=root,
            progress=progress,
            log=print,
            fingerprint=prints[f"plain{lam:g}"],
            device=device,
            steps=profile.attack_steps,
            n_targets=profile.attack_targets,
        )
        attacked = tables.AttackSet(
            SimpleNamespace(name=name), on_device(tensors, device), meta, "test"
        )
        out.append(("plain", "ddn", lam, attacked, as_probs(net)))
    return out


def whitebox_rows(wb_sets: list, data, n: int) -> pd.DataFrame:
    """Each white-box set's model scored at every multiple of its own r on the examples its
    attack succeeded on (:func:`runs.study.tables.whitebox_curve`), on the first ``n`` test
    images."""
    x = data.test.x[:n]
    rows = []
    for kind, attack, param, attacked, fn in wb_sets:
        curve = tables.whitebox_curve(fn, x, attacked.tensors)
        rows.append((kind, attack, param, attacked.meta["summary"], curve))
    return tables.whitebox(rows)


def cached_table(
    root: Path, name: str, config: dict, make: Callable[[], pd.DataFrame], seed: int, out
) -> pd.DataFrame:
    """The table ``make()`` computes with Pyro's RNG seeded by ``seed``, or its artifact."""

    def compute():
        pyro.set_rng_seed(seed)
        return {}, {"rows": make().to_dict("records")}

    _, meta = cached(artifact_path(root, "tables", name, config), config, compute, log=print)
    out.add_seconds(f"table {without_seed(name)}", meta)
    return pd.DataFrame(meta["rows"])


def protocol_tables(
    protocol, profile, zoo, prints, sets, data, root, progress, device="cpu"
) -> dict:
    """The tables of one protocol, each a function computing its DataFrame."""
    rules = PROTOCOL_RULES[protocol]
    kw = {"bnn_mult": rules["bnn_mult"], "keep_failures": rules["keep_failures"]}
    jobs = {
        "attacks": lambda: tables.attack_summary(sets, data, authors=protocol == "paper"),
        "table2": lambda: tables.table2(
            zoo, sets, data, profile.runs, plain_mult=rules["plain_mult"], **kw
        ),
        "table3": lambda: tables.table3(zoo, sets, data, profile.ensemble_sizes, **kw),
        "table4": lambda: tables.table4(zoo, sets, data, profile.prune_rates, **kw),
    }
    sample_runs = max(1, profile.runs // 10)  # 10 of the full profile's 100 runs
    jobs["intervals"] = lambda: intervals.claim_values(
        zoo, sets, data, sample_runs, rules, ensemble=max(profile.ensemble_sizes)
    )
    if protocol == "paper":
        jobs["multiplier"] = lambda: tables.multiplier_control(zoo, sets, data, profile.runs)
    if protocol == "rigorous":
        jobs["noise"] = lambda: tables.noise_control(zoo, sets, data, profile.runs, zoo.seed)
        jobs["fixednoise"] = lambda: tables.fixed_noise_control(zoo, sets, data, profile.runs, **kw)
        # the white-box sets, attacked (or loaded) by the first table that needs them
        wb = functools.cache(
            lambda: whitebox_sets(profile, zoo, prints, data, root, progress, device)
        )
        jobs["whitebox"] = lambda: whitebox_rows(wb(), data, profile.eot_examples)
        jobs["transfer"] = lambda: tables.transfer_sweep(
            zoo.prob_fns(sample_runs), sets + [s for *_, s, _ in wb()], data
        )
    return jobs


def table_config(profile: Profile, seed: int, prints: dict, protocol: str | None = None) -> dict:
    """What a table of ``seed`` is stored under: the profile, the seed, the nets' prints and
    the protocol. The rigorous attack's targeted passes set the rigorous tables alone, and
    only when there are some, so every table made before the setting existed keeps its
    config (and its hash)."""
    settings = profile.as_dict()
    targets = settings.pop("attack_targets")
    config = {"profile": settings, "seed": seed, "models": prints}
    if protocol is not None:
        config["protocol"] = protocol
    if protocol == "rigorous" and targets:
        config["attack_targets"] = targets
    return config


def run_seed(
    protocols: list[str],
    profile: Profile,
    data: MNIST,
    root: Path,
    seed: int,
    *,
    executor: Executor,
    stage: Stages,
    progress: bool,
    device: str = "cpu",
) -> SeedResult:
    """Every stage of one seed on ``device``: train, load, attack, tabulate.

    :param data: on the CPU; the workers load their own, and this process moves it to
        ``device`` once the nets are trained.
    :param device: where everything runs: 'cpu' or 'cuda' (the workers share the GPU).
    """
    need_pool = "rigorous" in protocols
    out = SeedResult()
    with stage("train nets"):
        jobs = training_jobs(profile, seed, need_pool, device, protocols)
        train_all(jobs, profile, data, root, executor, progress)
    data = data.to(device)
    with stage("load nets"):
        zoo, prints = load_zoo(profile, data, root, seed, need_pool, out, device, protocols)
    base = table_config(profile, seed, prints)
    with stage("table1"):
        out.frames["table1"] = cached_table(
            root, table_name("table1", seed), base, lambda: tables.table1(zoo, data, profile.runs),
            seed, out,
        )  # fmt: skip
    with stage("sigma"):
        out.frames["sigma"] = cached_table(
            root, table_name("sigma", seed), base, lambda: tables.sigma_moves(zoo), seed, out
        )
    with stage("logit gaps"):
        out.frames["logit_gaps"] = cached_table(
            root, table_name("logit_gaps", seed), base,
            lambda: tables.logit_gaps(zoo, data, profile.eot_k), seed, out,
        )  # fmt: skip
    for protocol in protocols:
        with stage(f"attack sets ({protocol})"):
            sets = build_attack_sets(protocol, profile, zoo, data, root, progress, out, device)
        config = table_config(profile, seed, prints, protocol)
        config["sets"] = [fingerprint(s.meta) for s in sets]
        jobs = protocol_tables(protocol, profile, zoo, prints, sets, data, root, progress, device)
        for table, make in jobs.items():
            with stage(f"{table} ({protocol})"):
                version = {"version": TABLE_VERSIONS[table]} if table in TABLE_VERSIONS else {}
                out.frames[f"{protocol}/{table}"] = cached_table(
                    root, table_name(table, seed, protocol), config | version, make, seed, out
                )
        out.digits[protocol] = plots.digit_examples(
            sets, data, PROTOCOL_RULES[protocol]["bnn_mult"], protocol
        )
    return out

"""Rebuild Tables 1-4 of Zhang & Chen (2020) from scratch, offline, under two protocols.

    python runs/reproduce.py --profile full     # the committed runs/results and REPORT.md
    python runs/reproduce.py --profile quick    # a small slice in a few minutes (CI runs it)
    python runs/reproduce.py --profile full --seeds 0 1 2

Stages: train the 4 baselines, the 12 source nets, the 7 BNNs (and, for the rigorous
protocol, a pool of plain nets); build the 12 attack sets per protocol; score every model
through the one harness; write CSVs, plots and the report. Every trained net, attack set
and table is an artifact under --root/<profile>/, so a rerun reuses them and a killed run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import pyro
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import paper  # noqa: E402
import report  # noqa: E402
import tables  # noqa: E402
from profiles import get_profile  # noqa: E402

from pyro_bnn import (  # noqa: E402
    ensemble_fn,
    evaluate,
    load_mnist,
    sampler,
    single_sample_fn,
    train_baseline,
)
from pyro_bnn.artifacts import artifact_dir, atomic_write, cached, matching_meta  # noqa: E402
from pyro_bnn.attack_sets import attack_set  # noqa: E402
from pyro_bnn.attacks import perturb  # noqa: E402
from pyro_bnn.evaluate import as_probs  # noqa: E402
from pyro_bnn.sources import SOURCE_ARCHS, train_sources  # noqa: E402
from pyro_bnn.zoo import (  # noqa: E402
    baseline_artifact,
    bnn_artifact,
    bnn_name,
    train_bnn,
)

PROTOCOLS = {  # split attacked, multiplier for BNNs / plain nets, failures kept
    "paper": {"split": "val", "bnn_mult": 1.5, "plain_mult": 3.0, "keep_failures": False},
    "rigorous": {"split": "test", "bnn_mult": 1.0, "plain_mult": 1.0, "keep_failures": True},
}
BASELINE_ARCH = "FC-100-100-10"
TABLE_VERSIONS = {"attacks": 2}  # bump when a table's code changes, so it is recomputed


class Stages:
    """Prints each stage as it starts and records its wall time."""

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


def fingerprint(meta: dict) -> str:
    return meta["saved_at"]


def training_jobs(profile, seed: int, need_pool: bool) -> list[dict]:
    """Every net to train for one seed, longest first (FC-1200 sources, then BNNs)."""
    jobs = [
        {"kind": "source", "arch": arch, "lam": lam, "max_epochs": profile.source_epochs}
        for arch in reversed(SOURCE_ARCHS)
        for lam in paper.LAMBDAS
    ]
    jobs[4:4] = [
        {"kind": "bnn", "rho": rho, "max_epochs": profile.bnn_epochs} for rho in paper.RHO_INITS
    ]
    jobs += [
        {"kind": "baseline", "arch": BASELINE_ARCH, "lam": lam, "max_epochs": profile.plain_epochs}
        for lam in paper.LAMBDAS
    ]
    if need_pool:
        jobs += [
            {
                "kind": "pool",
                "arch": BASELINE_ARCH,
                "lam": 0.0,
                "pool_seed": pool_seed(seed, k),
                "max_epochs": profile.plain_epochs,
            }
            for k in range(profile.pool)
        ]
    return [job | {"seed": job.pop("pool_seed", seed)} for job in jobs]


def pool_seed(seed: int, k: int) -> int:
    return 1000 * (seed + 1) + k


def run_job(job: dict, data, root: Path, progress: bool, check_only: bool = False):
    """Train one net of the zoo (or, with check_only, say whether it is already done)."""
    if job["kind"] == "bnn":
        kw = {"root": root, "seed": job["seed"], "max_epochs": job["max_epochs"]}
        if check_only:
            return matching_meta(*bnn_artifact(job["rho"], data, **kw)) is not None
        return train_bnn(job["rho"], data, progress=progress, **kw)
    kw = {"root": root, "kind": job["kind"], "seed": job["seed"], "max_epochs": job["max_epochs"]}
    if check_only:
        return matching_meta(*baseline_artifact(job["arch"], job["lam"], data, **kw)) is not None
    return train_baseline(job["arch"], job["lam"], data, progress=progress, **kw)


def _worker(job: dict) -> tuple[str, float]:
    """Train one job in a worker process: one torch thread, the data loaded here."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    run_job(job, load_data(job["n_train"], job["n_eval"]), Path(job["root"]), progress=False)
    return job_label(job), time.perf_counter() - start


def job_label(job: dict) -> str:
    what = (
        f"rho_init {job['rho']:g}" if job["kind"] == "bnn" else f"{job['arch']} lam {job['lam']:g}"
    )
    return f"{job['kind']} {what} seed {job['seed']}"


def train_all(jobs: list[dict], profile, data, root: Path, workers: int, progress: bool) -> None:
    """Train what is not done yet: in worker processes (one thread each), or in-process."""
    todo = [job for job in jobs if not run_job(job, data, root, False, check_only=True)]
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} nets already trained; {len(todo)} to go",
        flush=True,
    )
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            run_job(job, data, root, progress)
        return
    payload = [
        job | {"root": str(root), "n_train": profile.n_train, "n_eval": profile.n_eval}
        for job in todo
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures = [pool.submit(_worker, job) for job in payload]
        for i, future in enumerate(as_completed(futures), 1):
            label, took = future.result()
            print(f"  [{i}/{len(todo)}] {label}: {took:.0f} s", flush=True)


def load_zoo(profile, data, root: Path, seed: int, need_pool: bool):
    """The trained nets of one seed (trained before by :func:`train_all`)."""
    plains, prints = {}, {}
    for lam in paper.LAMBDAS:
        net, meta = train_baseline(
            BASELINE_ARCH,
            lam,
            data,
            root=root,
            seed=seed,
            max_epochs=profile.plain_epochs,
            progress=False,
        )
        plains[lam] = net.eval().requires_grad_(False)
        prints[f"plain{lam:g}"] = fingerprint(meta)
    sources = train_sources(
        data, root=root, seed=seed, progress=False, max_epochs=profile.source_epochs
    )
    prints |= {s.name: fingerprint(s.meta) for s in sources}
    bnns = {}
    for rho in paper.RHO_INITS:
        bnn, guide, meta = train_bnn(
            rho, data, root=root, seed=seed, progress=False, max_epochs=profile.bnn_epochs
        )
        bnns[rho] = (bnn, guide.requires_grad_(False))
        prints[f"bnn{rho:g}"] = fingerprint(meta)
    pool = []
    for k in range(profile.pool if need_pool else 0):
        net, meta = train_baseline(
            BASELINE_ARCH,
            0.0,
            data,
            root=root,
            kind="pool",
            seed=pool_seed(seed, k),
            max_epochs=profile.plain_epochs,
            progress=False,
        )
        pool.append(net.eval().requires_grad_(False))
        prints[f"pool{k}"] = fingerprint(meta)
    return tables.Zoo(seed, bnns, plains, sources, pool), prints


def load_data(n_train, n_eval):
    data = load_mnist()
    return data.head(n_train, n_eval) if n_train else data


def build_attack_sets(protocol, profile, zoo, data, root, progress):
    spec = PROTOCOLS[protocol]
    steps = profile.paper_steps if protocol == "paper" else profile.attack_steps
    limit = profile.paper_examples if protocol == "paper" else profile.attack_examples
    sets = []
    for src in zoo.sources:
        tensors, meta = attack_set(
            src.name,
            src.net,
            data,
            protocol=protocol,
            split=spec["split"],
            limit=limit,
            root=root,
            fingerprint=src.fingerprint,
            progress=progress,
            steps=steps,
        )
        sets.append(tables.AttackSet(src, tensors, meta, spec["split"]))
    return sets


def whitebox_rows(profile, zoo, prints, data, root, progress):
    """White-box attacks on every FC-100-100-10 model: EOT on the BNNs (single-sample rule,
    and the 10-sample mean of the rho = -3 BNN), the rigorous attack on the baselines."""
    test = data.test.head(profile.eot_examples)
    rows = []
    targets = [(rho, 1) for rho in zoo.bnns] + [(-3.0, 10)]
    for rho, ens in targets:
        bnn, guide = zoo.bnns[rho]
        name = bnn_name(bnn.arch, rho, zoo.seed) + (f"_ens{ens}" if ens > 1 else "")
        tensors, meta = attack_set(
            name,
            sampler(bnn, guide, ens),
            data,
            protocol="eot",
            limit=profile.eot_examples,
            root=root,
            progress=progress,
            fingerprint=prints[f"bnn{rho:g}"],
            steps=profile.eot_steps,
            k=profile.eot_k,
            passes=profile.eot_passes,
        )
        x_adv = perturb(test.x, tensors["r"])
        fn = (
            single_sample_fn(bnn, guide, profile.runs)
            if ens == 1
            else ensemble_fn(bnn, guide, ens, runs=max(1, profile.runs // ens))
        )
        acc = 100 * evaluate(fn, x_adv, test.y)["acc"]
        rows.append(
            (
                "bnn" if ens == 1 else f"bnn-mean{ens}",
                f"eot k={profile.eot_k}",
                rho,
                meta["summary"],
                acc,
            )
        )
    for lam, net in zoo.plains.items():
        name = f"{BASELINE_ARCH}_lam{lam:g}_seed{zoo.seed}"
        tensors, meta = attack_set(
            name,
            net,
            data,
            protocol="rigorous",
            limit=profile.eot_examples,
            root=root,
            progress=progress,
            fingerprint=prints[f"plain{lam:g}"],
            steps=profile.attack_steps,
        )
        acc = 100 * evaluate(as_probs(net), perturb(test.x, tensors["r"]), test.y)["acc"]
        rows.append(("plain", "ddn", lam, meta["summary"], acc))
    return tables.whitebox(rows)


def cached_table(root, name, config, compute, seed) -> pd.DataFrame:
    def run():
        pyro.set_rng_seed(seed)
        return {}, {"rows": compute().to_dict("records")}

    _, meta = cached(artifact_dir(root, "tables", name), config, run)
    return pd.DataFrame(meta["rows"])


def protocol_jobs(protocol, profile, zoo, prints, sets, data, root, progress) -> dict:
    """The tables of one protocol, each a function computing its DataFrame."""
    spec = PROTOCOLS[protocol]
    kw = {"bnn_mult": spec["bnn_mult"], "keep_failures": spec["keep_failures"]}
    jobs = {
        "attacks": lambda: tables.attack_summary(sets, data),
        "table2": lambda: tables.table2(
            zoo, sets, data, profile.runs, plain_mult=spec["plain_mult"], **kw
        ),
        "table3": lambda: tables.table3(zoo, sets, data, profile.ensemble_sizes, **kw),
        "table4": lambda: tables.table4(zoo, sets, data, profile.prune_rates, **kw),
    }
    if protocol == "paper":
        jobs["multiplier"] = lambda: tables.multiplier_control(zoo, sets, data, profile.runs)
    if protocol == "rigorous":
        jobs["noise"] = lambda: tables.noise_control(zoo, sets, data, profile.runs, zoo.seed)
        jobs["whitebox"] = lambda: whitebox_rows(profile, zoo, prints, data, root, progress)
    return jobs


def run_seed(args, profile, data, root, seed, stage, progress) -> dict[str, pd.DataFrame]:
    need_pool = "rigorous" in args.protocols
    with stage("train nets"):
        train_all(
            training_jobs(profile, seed, need_pool), profile, data, root, args.workers, progress
        )
    with stage("load nets"):
        zoo, prints = load_zoo(profile, data, root, seed, need_pool)
    base = {"profile": profile.as_dict(), "seed": seed, "models": prints}
    out = {"digits": {}}
    with stage("table1"):
        out["table1"] = cached_table(
            root, f"table1_seed{seed}", base, lambda: tables.table1(zoo, data, profile.runs), seed
        )
    for protocol in args.protocols:
        with stage(f"attack sets ({protocol})"):
            sets = build_attack_sets(protocol, profile, zoo, data, root, progress)
        config = base | {"protocol": protocol, "sets": [fingerprint(s.meta) for s in sets]}
        jobs = protocol_jobs(protocol, profile, zoo, prints, sets, data, root, progress)
        for table, compute in jobs.items():
            with stage(f"{table} ({protocol})"):
                version = {"version": TABLE_VERSIONS[table]} if table in TABLE_VERSIONS else {}
                out[f"{protocol}/{table}"] = cached_table(
                    root, f"{protocol}_{table}_seed{seed}", config | version, compute, seed
                )
        out["digits"][protocol] = report.digit_examples(
            sets, data, PROTOCOLS[protocol]["bnn_mult"], protocol
        )
    return out


def machine() -> str:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads, {platform.system()}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", help="quick (default) or full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--root", default=str(HERE / "artifacts"), help="artifact folder")
    p.add_argument(
        "--results",
        default=None,
        help="results folder (default: runs/results, or runs/results-quick)",
    )
    p.add_argument(
        "--report",
        default=None,
        help="report path (default: runs/REPORT.md, or runs/REPORT-quick.md)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that train nets in parallel, one thread each (default: the number of CPUs)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    suffix = "" if profile.name == "full" else f"-{profile.name}"
    results = Path(args.results or HERE / f"results{suffix}")
    report_path = Path(args.report or HERE / f"REPORT{suffix}.md")
    root = Path(args.root) / profile.name
    progress = not args.no_progress
    stage = Stages()
    start = time.perf_counter()
    with stage("load data"):
        data = load_data(profile.n_train, profile.n_eval)
    per_seed = [run_seed(args, profile, data, root, seed, stage, progress) for seed in args.seeds]
    with stage("write results"):
        frames = report.combine(per_seed, args.seeds)
        for name, frame in frames.items():
            if name == "table1":  # protocol-independent; a copy beside each protocol's tables
                for protocol in args.protocols:
                    report.write_frame(frame, results / protocol / name)
            if name != "digits":
                report.write_frame(frame, results / name)
        report.plots(frames, results, args.protocols)
        run_info = {
            "command": "python runs/reproduce.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "profile": profile.as_dict(),
            "seeds": args.seeds,
            "protocols": args.protocols,
            "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
            ).stdout.strip(),
            "stage_seconds": {k: round(v, 1) for k, v in stage.times.items()},
            "total_seconds": round(time.perf_counter() - start, 1),
            "compute_seconds": report.compute_seconds(root),
        }
        text = json.dumps(run_info, indent=2)
        atomic_write(results / "run.json", lambda tmp: tmp.write_text(text + "\n"))
        report.write_report(report_path, frames, per_seed, run_info, results)
    print(f"done in {time.perf_counter() - start:.0f} s; report: {report_path}")


if __name__ == "__main__":
    main()

"""The nets of one seed as training jobs, and the workers that train them.

A job is a plain dict (so it pickles into a worker): its kind ('source', 'bnn',
'control', 'baseline', 'matched', 'pool'), what to train (arch and lambda, or the list of
rho_init that train as one stack, with the control's name), the seed, the max-epoch cap
and the device it trains on ('cpu' or 'cuda'; on a GPU every worker shares it), and for a
source the protocols whose attack sets it builds once trained. The device is not part of
any artifact's config, so a net trained on a GPU is reused by a run on the CPU and the
other way round. :func:`train_all` trains what is not done yet, longest first, through an
executor of :mod:`runs.study.executors` (local worker processes or Ray tasks, one torch thread
each); :func:`run_job` trains (or loads) one job through :mod:`runs.study.zoo`, and
:func:`train_job` adds a source's attack sets, so that in a worker they overlap the BNN
stack's training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from pyro_bnn.artifacts import matching_meta
from pyro_bnn.data import MNIST, load_mnist

from . import paper
from .config import BNN, PAPER_SOURCE, PLAIN, TrainConfig
from .executors import Executor, job_device
from .profiles import Profile
from .protocols import source_attack_set
from .sources import as_source
from .zoo import (
    CONTROLS,
    PAPER_SOURCE_KIND,
    baseline_artifact,
    bnn_artifact,
    train_baseline,
    train_bnns,
)

__all__ = [
    "load_data",
    "matched",
    "pool_seed",
    "run_job",
    "train_all",
    "train_job",
    "training_jobs",
]


def load_data(profile: Profile) -> MNIST:
    """MNIST, cut to the profile's slice."""
    data = load_mnist()
    return data.head(profile.n_train, profile.n_eval) if profile.n_train else data


def matched(epochs: int) -> TrainConfig:
    """A plain net trained as the BNNs are: ``epochs`` epochs, no early stopping, the epoch
    of best validation accuracy kept (the 'matched' kind, beside the patience-5 baselines)."""
    return replace(PLAIN, max_epochs=epochs, patience=None)


def pool_seed(seed: int, k: int) -> int:
    """Seed of the k-th plain net in the pool of the ensemble control, for run seed ``seed``."""
    return 1000 * (seed + 1) + k


def training_jobs(
    profile: Profile,
    seed: int,
    need_pool: bool,
    device: str = "cpu",
    protocols: Sequence[str] = (),
) -> list[dict]:
    """Every net to train for one seed, longest first (the paper protocol's own sources
    where the profile trains them, the BNN stack, the control stacks, the plain nets trained
    as the BNNs are, then the FC-1200 sources), each to train on ``device``.

    :param protocols: the attack sets a source job builds once its net is trained
        (:func:`train_job`), so that they overlap the BNN stack's training; with
        ``profile.paper_source_epochs`` set and 'paper' among them, the paper protocol's
        sets are made on sources of its own (recipe 'paper', runs.study.config.PAPER_SOURCE).
    """
    jobs = [{"kind": "bnn", "rhos": list(paper.RHO_INITS), "max_epochs": profile.bnn_epochs}]
    jobs += [
        {"kind": "control", "control": control, "rhos": list(profile.control_rhos),
         "max_epochs": profile.bnn_epochs}
        for control in CONTROLS
    ]  # fmt: skip
    jobs += [
        {"kind": "matched", "arch": paper.TABLE1_ARCH, "lam": lam, "max_epochs": profile.bnn_epochs}
        for lam in paper.LAMBDAS
    ]
    own = profile.paper_source_epochs is not None and "paper" in protocols
    shared = [p for p in protocols if not (own and p == "paper")]
    if own:  # the paper protocol's sources, trained as the authors' were: the longest jobs
        jobs[:0] = [
            {"kind": "source", "recipe": "paper", "arch": arch, "lam": lam,
             "max_epochs": profile.paper_source_epochs, "protocols": ["paper"]}
            for arch in reversed(paper.SOURCE_ARCHS)
            for lam in paper.LAMBDAS
        ]  # fmt: skip
    jobs += [
        {
            "kind": "source",
            "arch": arch,
            "lam": lam,
            "max_epochs": profile.source_epochs,
            "protocols": shared,
        }
        for arch in reversed(paper.SOURCE_ARCHS)
        for lam in paper.LAMBDAS
    ]
    jobs += [
        {
            "kind": "baseline",
            "arch": paper.TABLE1_ARCH,
            "lam": lam,
            "max_epochs": profile.plain_epochs,
        }
        for lam in paper.LAMBDAS
    ]
    if need_pool:
        jobs += [
            {
                "kind": "pool",
                "arch": paper.TABLE1_ARCH,
                "lam": 0.0,
                "pool_seed": pool_seed(seed, k),
                "max_epochs": profile.plain_epochs,
            }
            for k in range(profile.pool)
        ]
    return [job | {"seed": job.pop("pool_seed", seed), "device": device} for job in jobs]


def run_job(
    job: dict,
    data: MNIST,
    root: Path,
    progress: bool,
    check_only: bool = False,
    compile: bool = False,
):
    """Train one job of the zoo (a plain net, or a seed's BNNs as one stack) on the job's
    device, or load it; with check_only, say whether it is done.

    :param compile: fuse the BNN stack's weight draw with ``torch.compile``.
    :returns: what :func:`runs.study.zoo.train_bnns` or :func:`runs.study.zoo.train_baseline`
        returns, or with check_only a bool.
    """
    device = job.get("device", "cpu")
    if job["kind"] in ("bnn", "control"):  # every rho_init of the seed, as one stack
        kw = {"train": replace(BNN, max_epochs=job["max_epochs"]), "seed": job["seed"]}
        kw["control"] = job.get("control")
        if check_only:
            found = [bnn_artifact(rho, data, root=root, **kw) for rho in job["rhos"]]
            return all(matching_meta(*pair) is not None for pair in found)
        return train_bnns(job["rhos"], data, root=root, progress=progress, compile=compile,
                          device=device, **kw)  # fmt: skip
    train = matched(job["max_epochs"]) if job["kind"] == "matched" else PLAIN
    kind = job["kind"]
    if job.get("recipe") == "paper":  # the paper protocol's source, under its own kind
        train, kind = PAPER_SOURCE, PAPER_SOURCE_KIND
    kw = {"train": replace(train, max_epochs=job["max_epochs"]), "seed": job["seed"]}
    kw |= {"root": root, "kind": kind}
    if check_only:
        return matching_meta(*baseline_artifact(job["arch"], job["lam"], data, **kw)) is not None
    return train_baseline(job["arch"], job["lam"], data, progress=progress, device=device, **kw)


def train_job(job: dict, profile: Profile, data: MNIST, root: Path, progress: bool) -> None:
    """Train one job (:func:`run_job`); a source job then builds its attack sets under the
    protocols it names, while its net is at hand (in a worker, beside the BNN stack)."""
    trained = run_job(job, data, root, progress, compile=profile.compile)
    if job["kind"] == "source" and job.get("protocols"):
        src = as_source(job["arch"], job["lam"], job["seed"], *trained)
        for protocol in job["protocols"]:
            source_attack_set(src, protocol, profile, data, root, device=job_device(job),
                              progress=progress)  # fmt: skip


def job_label(job: dict) -> str:
    """E.g. 'source FC-10 lam 0.01 seed 0 and its paper, rigorous attack sets', 'paper
    source FC-10 lam 0 seed 0 and its paper attack sets' or 'bnn rho_init -3 seed 0 on
    cuda'."""
    if job["kind"] in ("bnn", "control"):
        what = "rho_init " + " ".join(f"{rho:g}" for rho in job["rhos"])
        what = f"{job['control']} {what}" if job.get("control") else what
    else:
        what = f"{job['arch']} lam {job['lam']:g}"
    where = "" if job.get("device", "cpu") == "cpu" else f" on {job['device']}"
    sets = f" and its {', '.join(job['protocols'])} attack sets" if job.get("protocols") else ""
    kind = f"{job['recipe']} {job['kind']}" if job.get("recipe") else job["kind"]
    return f"{kind} {what} seed {job['seed']}{where}{sets}"


def _worker(job: dict, profile: Profile, root: Path) -> float:
    """:func:`train_job` in a worker (the executor sets one torch thread); the data loaded
    here on the CPU (the trainers and attacks move it to the job's device).

    :returns: its wall time (s).
    """
    start = time.perf_counter()
    train_job(job, profile, load_data(profile), root, progress=False)
    return time.perf_counter() - start


def train_all(
    jobs: list[dict],
    profile: Profile,
    data: MNIST,
    root: Path,
    executor: Executor,
    progress: bool,
) -> None:
    """Train what is not done yet, in the order given: through ``executor``'s workers, or
    in-process when there is one job or the executor asks for it (one local worker).

    :param executor: from :func:`runs.study.executors.make_executor`.
    """
    todo = [job for job in jobs if not run_job(job, data, root, False, check_only=True)]
    nets = sum(len(job.get("rhos", [0])) for job in jobs)  # a BNN job trains a stack
    to_go = sum(len(job.get("rhos", [0])) for job in todo)
    print(f"{nets - to_go} of {nets} nets already trained; {to_go} to go", flush=True)
    if executor.in_process or len(todo) <= 1:
        for job in todo:
            train_job(job, profile, data, root, progress)
        return
    done = executor.map_jobs(partial(_worker, profile=profile, root=root), todo)
    for i, (job, took) in enumerate(done, 1):
        print(f"  [{i}/{len(todo)}] {job_label(job)}: {took:.0f} s", flush=True)

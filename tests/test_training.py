"""runs.study.training through the executors of runs.study.executors: local processes and
Ray tasks."""

import importlib.util
from dataclasses import replace

import pytest
import torch

from runs.study import paper
from runs.study.executors import LocalExecutor, job_device, make_executor
from runs.study.profiles import get_profile
from runs.study.protocols import source_attack_set
from runs.study.sources import as_source
from runs.study.training import load_data, run_job, train_all, training_jobs
from runs.study.zoo import CONTROLS

HAVE_RAY = importlib.util.find_spec("ray") is not None


def _square(job: dict) -> tuple[int, int]:
    """A fake job: x squared, and the torch threads the worker runs on."""
    return job["x"] ** 2, torch.get_num_threads()


def _train(executor, profile, data, root, protocols=()) -> list[dict]:
    """Train the quick profile's two smallest nets (FC-10 sources, lam 0 and 1e-4), and
    build their attack sets under ``protocols``."""
    jobs = training_jobs(profile, 0, False, protocols=protocols)
    jobs = [job for job in jobs if job.get("arch") == "FC-10"][:2]
    train_all(jobs, profile, data, root, executor, progress=False)
    return [run_job(job, data, root, progress=False)[0].state_dict() for job in jobs]


def _attack_sets(profile, data, root, protocol) -> tuple[list[dict], list[str]]:
    """The two FC-10 sources' attack sets as the pipeline asks for them, and its log."""
    log, sets = [], []
    for lam in (0.0, 1e-4):
        job = {"kind": "source", "arch": "FC-10", "lam": lam, "seed": 0}
        src = as_source("FC-10", lam, 0, *run_job(job | {"max_epochs": profile.source_epochs},
                                                   data, root, progress=False))  # fmt: skip
        sets.append(source_attack_set(src, protocol, profile, data, root, log=log.append)[0])
    return sets, log


def test_a_source_job_leaves_its_attack_sets_for_the_pipeline(tmp_path, capsys):
    profile = replace(get_profile("quick"), paper_source_epochs=None)  # sources shared
    data = load_data(profile)
    _train(LocalExecutor(2), profile, data, tmp_path, protocols=["paper", "rigorous"])
    assert "source FC-10 lam 0 seed 0 and its paper, rigorous attack sets: " in (
        capsys.readouterr().out
    )
    for protocol in ("paper", "rigorous"):
        sets, log = _attack_sets(profile, data, tmp_path, protocol)
        assert len(log) == 2 and all(line.startswith("reused ") for line in log), log
        assert all(s["success"].any() for s in sets)
    # with no protocols named, a source job trains its net alone
    _train(LocalExecutor(2), profile, data, tmp_path / "bare")
    assert all(line.startswith("saved ") for line in _attack_sets(
        profile, data, tmp_path / "bare", "paper")[1])  # fmt: skip


def test_make_executor_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown executor 'dask'; known executors: local, ray"):
        make_executor("dask", 2)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        make_executor("local", 0)
    assert make_executor("local", 1).in_process  # one worker: train_all stays in-process
    assert not make_executor("local", 2).in_process
    with pytest.raises(ValueError, match="address is for the ray executor"):
        make_executor("local", 2, address="auto")
    if HAVE_RAY:
        assert make_executor("ray", 2, address="ray://head:10001").address == "ray://head:10001"


@pytest.mark.skipif(not HAVE_RAY, reason='needs Ray: pip install -e ".[ray]"')
def test_local_and_ray_train_identical_nets(tmp_path, capsys):
    profile = get_profile("quick")
    data = load_data(profile)
    jobs = [{"x": x} for x in range(3)]
    nets = {}
    for name in ("local", "ray"):
        with make_executor(name, 2) as executor:
            assert list(executor.map_jobs(_square, [])) == []
            nets[name] = _train(executor, profile, data, tmp_path / name)
            if name == "ray":  # every job once, each task on one torch thread
                squares = sorted(out for _, out in executor.map_jobs(_square, jobs))
                assert squares == [(0, 1), (1, 1), (4, 1)]
    out = capsys.readouterr().out
    assert out.count("0 of 2 nets already trained; 2 to go") == 2
    assert out.count("source FC-10 lam 0 seed 0: ") == 2
    assert out.count("source FC-10 lam 0.0001 seed 0: ") == 2
    local, ray = nets["local"], nets["ray"]
    assert len(local) == len(ray) == 2
    for a, b in zip(local, ray):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    first = next(iter(local[0]))
    assert not torch.equal(local[0][first], local[1][first])  # two different nets
    # a rerun finds both artifacts and trains nothing
    _train(LocalExecutor(2), profile, data, tmp_path / "ray")
    assert "2 of 2 nets already trained; 0 to go" in capsys.readouterr().out


def test_the_paper_protocol_attacks_sources_of_its_own_trained_as_the_authors_were(
    tmp_path, capsys
):
    profile = get_profile("quick")  # paper_source_epochs: the paper protocol's own sources
    data = load_data(profile)
    jobs = training_jobs(profile, 0, False, protocols=["paper", "rigorous"])
    assert len(jobs) == 12 + 12 + 1 + len(CONTROLS) + 2 * len(paper.LAMBDAS)
    assert [job.get("recipe") for job in jobs[:12]] == ["paper"] * 12  # longest first
    fc10 = [job for job in jobs if job.get("arch") == "FC-10" and job["lam"] == 0.0]
    assert [(job.get("recipe"), job["protocols"]) for job in fc10] == [
        ("paper", ["paper"]), (None, ["rigorous"])
    ]  # fmt: skip
    train_all(fc10, profile, data, tmp_path, LocalExecutor(2), progress=False)
    out = capsys.readouterr().out
    assert "paper source FC-10 lam 0 seed 0 and its paper attack sets: " in out
    assert "] source FC-10 lam 0 seed 0 and its rigorous attack sets: " in out
    for job in fc10:
        net, meta = run_job(job, data, tmp_path, progress=False)
        (protocol,) = job["protocols"]
        log = []
        source_attack_set(as_source("FC-10", 0.0, 0, net, meta), protocol, profile, data,
                          tmp_path, log=log.append)  # fmt: skip
        assert log[0].startswith("reused "), log
    # the paper one: the authors' recipe, its last epoch kept, under its own kind
    net, meta = run_job(fc10[0], data, tmp_path, progress=False)
    assert meta["config"]["keep"] == "last" and meta["config"]["patience"] is None
    assert meta["epochs"] == meta["best_epoch"] == profile.paper_source_epochs
    assert (tmp_path / "paper-source").is_dir()


class _Recorder(LocalExecutor):
    """An executor that runs nothing and keeps the jobs it was given."""

    def __init__(self):
        super().__init__(2)
        self.jobs = []

    def map_jobs(self, fn, jobs):
        self.jobs += list(jobs)
        return iter(())


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_device_travels_in_every_job(tmp_path, monkeypatch, device):
    import runs.study.training as training

    profile = get_profile("quick")
    jobs = training_jobs(profile, 0, True, device)
    controls, matched = len(CONTROLS), len(paper.LAMBDAS)  # the stacks, the matched nets
    assert len(jobs) == 12 + 1 + controls + matched + 4 + profile.pool
    assert [job["kind"] for job in jobs[: 1 + controls]] == ["bnn"] + ["control"] * controls
    assert {job["device"] for job in jobs} == {device}
    assert training_jobs(profile, 0, False)[0]["device"] == "cpu"  # the default
    # train_all hands the jobs, device and all, to the executor's workers (nothing trains:
    # the recorder runs no job, and no artifact exists yet)
    data = load_data(profile)
    recorder = _Recorder()
    train_all(jobs, profile, data, tmp_path, recorder, progress=False)
    assert recorder.jobs == jobs
    # run_job, in a worker, trains on the job's device
    seen = []
    monkeypatch.setattr(training, "train_baseline", lambda *a, **kw: seen.append(kw["device"]))
    monkeypatch.setattr(training, "train_bnns", lambda *a, **kw: seen.append(kw["device"]))
    for job in (jobs[0], next(job for job in jobs if job["kind"] == "bnn")):
        run_job(job, data, tmp_path, progress=False)
    assert seen == [device, device]
    assert job_device(jobs[0]) == device and job_device({"x": 1}) == "cpu"

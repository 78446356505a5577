"""Rebuild Tables 1-4 of Zhang & Chen (2020) from scratch, offline, under two protocols.

    python runs/reproduce.py --profile full     # the committed runs/results and REPORT.md
    python runs/reproduce.py --profile quick    # a small slice in about a minute (CI runs it)
    python runs/reproduce.py --profile hour     # the protocol at cut sizes (wall time: run.json)
    python runs/reproduce.py --profile full --seeds 0 1 2
    python runs/reproduce.py --profile full --device cuda   # on a GPU, the authors' budget

Stages (:mod:`runs.study.pipeline`): train the 4 baselines, the 12 source nets, the 7 BNNs (and,
for the rigorous protocol, a pool of plain nets); build the 12 attack sets per protocol;
score every model through the one harness; then write CSVs, plots and the report. Every
trained net, attack set and table is an artifact under --root/<profile>/, so a rerun
reuses them and a killed run resumes where it stopped. Each seed's own tables are also kept
under <results>/seeds/<seed>/ (runs.study.results.save_seed), and a later run of the same
profile and protocols combines the seeds it runs with the seeds saved there, so seeds run
in different sittings or on different machines add up. With --device cuda everything
(training in every worker, attacks, tables) runs on the GPU, and the full profile's
paper-variant attack takes the authors' 4000 steps per target (Profile.on_device);
artifacts do not depend on the device, so a CPU run reuses GPU-trained nets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pyro_bnn.artifacts import atomic_write
from runs.study import plots, report, results
from runs.study.args import Parser, add_attack_targets, device, positive_int
from runs.study.claims import claims_over_seeds
from runs.study.executors import EXECUTORS, make_executor
from runs.study.machine import describe
from runs.study.pipeline import Stages, run_seed
from runs.study.profiles import PROFILES, get_profile
from runs.study.protocols import PROTOCOL_RULES
from runs.study.training import load_data

HERE = Path(__file__).resolve().parent


def build_parser() -> Parser:
    p = Parser(prog="runs/reproduce.py", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", choices=list(PROFILES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--protocols", nargs="+", default=list(PROTOCOL_RULES), choices=list(PROTOCOL_RULES)
    )
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
        type=positive_int,
        default=os.cpu_count() or 1,
        help="processes that train nets in parallel, one thread each (default: the number of CPUs)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=list(EXECUTORS),
        help="where the nets train: local worker processes, or Ray tasks (on the cluster at "
        "RAY_ADDRESS if set, else on a local Ray instance; needs pip install -e '.[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --executor ray: the Ray cluster to run on, e.g. ray://head:10001 or auto "
        "(default: RAY_ADDRESS, else a local instance)",
    )
    p.add_argument(
        "--device",
        type=device,
        default="cpu",
        help="where everything runs: cpu, or cuda (every worker shares the GPU; the full "
        "profile's paper attack then takes the authors' 4000 steps per target)",
    )
    add_attack_targets(p)
    p.add_argument(
        "--only-these-seeds",
        action="store_true",
        help="combine only the seeds run now, not those an earlier run saved under "
        "<results>/seeds/ with the same profile and protocols",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run every stage for every seed, then write the results, the plots and the report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        executor = make_executor(args.executor, args.workers, args.address)
    except (RuntimeError, ValueError) as err:  # Ray asked for but not installed; bad address
        parser.error(str(err))
    profile = get_profile(args.profile, args.attack_targets).on_device(args.device)
    suffix = "" if profile.name == "full" else f"-{profile.name}"
    out = Path(args.results or HERE / f"results{suffix}")
    report_path = Path(args.report or HERE / f"REPORT{suffix}.md")
    root = Path(args.root) / profile.name
    stage = Stages()
    start = time.perf_counter()
    with stage("load data"):
        data = load_data(profile)
    with executor:
        per_seed = [
            run_seed(
                args.protocols,
                profile,
                data,
                root,
                seed,
                executor=executor,
                stage=stage,
                progress=not args.no_progress,
                device=args.device,
            )  # fmt: skip
            for seed in args.seeds
        ]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    with stage("write results"):
        # every seed's own tables go under <results>/seeds/; seeds saved there by earlier
        # runs of the same profile and protocols join the ones run now
        match = json.loads(json.dumps({"profile": profile.as_dict(), "protocols": args.protocols}))
        for seed, r in zip(args.seeds, per_seed):
            results.save_seed(r.frames, out, seed, match | {
                "command": "python runs/reproduce.py " + " ".join(argv), "commit": commit,
                "date": date, "device": args.device, "machine": describe(args.device),
                "compute_seconds": {k: round(v, 1) for k, v in r.seconds.items()},
            })  # fmt: skip
        saved = {} if args.only_these_seeds else results.other_seeds(out, match, args.seeds)
        runs = {seed: r.frames for seed, r in zip(args.seeds, per_seed)}
        seeds = sorted(set(runs) | set(saved))
        per_seed_frames = [runs[s] if s in runs else saved[s][0] for s in seeds]
        seconds = {s: saved[s][1]["compute_seconds"] for s in saved} | {
            s: r.seconds for s, r in zip(args.seeds, per_seed)
        }
        frames = results.combine(per_seed_frames, seeds)
        for protocol in args.protocols:  # the paper's headline claims, per seed
            frames[f"{protocol}/claims"] = claims_over_seeds(per_seed_frames, seeds, protocol)
        results.write_tables(frames, out, args.protocols)
        plots.plots(frames, per_seed[0].digits, out, args.protocols)
        run_info = {
            "command": "python runs/reproduce.py " + " ".join(argv),
            "profile": profile.as_dict(),
            "seeds": seeds,
            "protocols": args.protocols,
            "device": args.device,
            "machine": describe(args.device),
            "date": date,
            "commit": commit,
            "seed_commits": {
                str(s): (saved[s][1]["commit"] if s in saved else commit) for s in seeds
            },
            "stage_seconds": {k: round(v, 1) for k, v in stage.times.items()},
            "total_seconds": round(time.perf_counter() - start, 1),
            "compute_seconds": {
                label: {str(s): round(seconds[s][label], 1) for s in seeds if label in seconds[s]}
                for label in sorted({label for sec in seconds.values() for label in sec})
            },
        }
        text = json.dumps(run_info, indent=2)
        atomic_write(out / "run.json", lambda tmp: tmp.write_text(text + "\n"))
        report.write_report(report_path, run_info, out)
    print(f"done in {time.perf_counter() - start:.0f} s on {args.device}; report: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

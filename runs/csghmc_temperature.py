"""How hot are cSGHMC's draws on FC-10? Their configurational temperature, which reads 1 at
the exact posterior, by step size, preconditioner and start.

    python runs/csghmc_temperature.py                 # the grid below, FC-10, 50,000 images
    python runs/csghmc_temperature.py --scales fisher --lrs 2 5 --starts map
    python runs/csghmc_temperature.py --quick         # a slice, 8 epochs, temp dirs

FC-10 under N(0, 1) weights (runs/approximations.py's cSGHMC) is sampled by
pyro_bnn.sgmcmc.fit_csghmc for --epochs epochs in --cycles cycles, the noise on for
--noise of each cycle and a draw kept after each epoch of its last quarter, for every
combination of:
- --scales: none (Zhang et al.'s sampler) or fisher (pyro_bnn.sgmcmc.fisher_scale at
  the MAP, a fixed diagonal preconditioner);
- --lrs: the first step size of a cycle (on w for none, on w / scale for fisher);
- --starts: a prior draw (the library's default) or the MAP (pyro_bnn.mcmc.map_estimate).
Each draw's reading of pyro_bnn.mcmc.configurational_temperature (center: the MAP) is 1
in expectation under the exact posterior, whatever its shape; above 1 the draws are too
spread, below 1 too tight. Readings on the pixels some training image lights and on those
none does (where the posterior is the prior) are reported apart, over every draw and over
the last cycle's draws alone, after the chain's transient. Beside them: the
predictive of all the draws on the test set (accuracy, NLL), the median sd of the unlit
pixels' weights over the draws (1 under the exact posterior), and the wall time.

Writes csghmc_temperature.csv (one row per setting; _seed<S> for --seed S other than 0),
.md and .png (the readings, draw by draw) to --results (default
runs/results/approximations/), then csghmc_temperature_seeds.csv/.md: every seed's table
there run with the same epochs, cycles, noise and images, pooled per setting. Every number
is computed here; nothing is cached, so a killed run is rerun whole (about 2 minutes per
setting on a CPU).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from pyro_bnn import BayesianMLP, ensemble_fn, evaluate, load_mnist, make_prior  # noqa: E402
from pyro_bnn.artifacts import atomic_write  # noqa: E402
from pyro_bnn.mcmc import configurational_temperature, map_estimate  # noqa: E402
from pyro_bnn.sgmcmc import fisher_scale, fit_csghmc  # noqa: E402
from runs.study.args import Parser, device, exit_timed, positive_float, positive_int, started  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.plots import save_png  # noqa: E402

HERE = Path(__file__).resolve().parent
ARCH = "FC-10"
SCALES = ("none", "fisher")
STARTS = ("prior", "map")
RUN = ["epochs", "cycles", "noise", "n_train"]  # what a seed's table must share to be pooled
SAMPLE_FRACTION = (
    0.25  # runs/approximations.py's: a draw after each epoch of a cycle's last quarter
)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="runs/csghmc_temperature.py", description=__doc__.splitlines()[0])
    p.add_argument("--scales", nargs="+", choices=SCALES, default=list(SCALES))
    p.add_argument("--lrs", type=positive_float, nargs="+", default=None,
                   help="default: 0.05 0.1 0.5 for none, 2 5 20 for fisher")  # fmt: skip
    p.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS))
    p.add_argument("--epochs", type=positive_int, default=100)
    p.add_argument("--cycles", type=positive_int, default=5)
    p.add_argument("--noise", type=positive_float, default=1.0,
                   help="the last part of each cycle with noise, in [0.25, 1]")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=positive_int, default=None, help="train on a slice")
    p.add_argument("--results", default=None,
                   help="default runs/results/approximations/; --quick: a temp dir")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="a slice, 8 epochs, temp dirs")
    args = p.parse_args(argv)
    if not SAMPLE_FRACTION <= args.noise <= 1:
        p.error(f"argument --noise: must be in [{SAMPLE_FRACTION}, 1], got {args.noise}")
    if args.quick:
        args.limit, args.epochs, args.cycles = 1000, 8, 1  # 2 draws
        args.lrs = args.lrs or [0.1]
        args.results = args.results or tempfile.mkdtemp(prefix="pyro_bnn_quick_")
    args.results = args.results or str(HERE / "results" / "approximations")
    command = started(args, "runs/csghmc_temperature.py", argv)
    data = load_mnist() if args.limit is None else load_mnist().head(args.limit)
    data = data.to(args.device)
    bnn = BayesianMLP(ARCH, prior=make_prior("normal")).to(args.device)
    start = time.perf_counter()
    mode = map_estimate(bnn, data, device=args.device)  # (P,)
    scale = fisher_scale(bnn, data, mode, device=args.device)
    print(f"MAP and fisher_scale in {time.perf_counter() - start:.0f} s")
    lit = data.train.lit().cpu()  # (784,)
    # the flat weights begin with the first layer's (10, 784) matrix, row by row
    on_lit = torch.cat([lit.expand(10, -1).reshape(-1), torch.ones(10, dtype=torch.bool)])
    defaults = {"none": [0.05, 0.1, 0.5], "fisher": [2.0, 5.0, 20.0]}
    grid = [(s, lr, st) for s in args.scales for lr in (args.lrs or defaults[s])
            for st in args.starts]  # fmt: skip
    rows, readings = [], {}
    for kind, lr, begin in tqdm(grid, desc="settings", disable=args.no_progress):
        row, t = setting(args, data, bnn, mode, scale, on_lit, kind, lr, begin)
        rows.append(row)
        readings[row["setting"]] = t
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()))  # fmt: skip
    run = {"seed": args.seed, "epochs": args.epochs, "cycles": args.cycles, "noise": args.noise,
           "n_train": len(data.train)}  # fmt: skip
    table = pd.DataFrame(rows).assign(**run)
    results = Path(args.results)
    stem = "csghmc_temperature" + ("" if args.seed == 0 else f"_seed{args.seed}")
    atomic_write(results / f"{stem}.csv", lambda t: table.to_csv(t, index=False))
    markdown = (
        table.to_markdown(index=False, floatfmt=".3g")
        + f"\n\nMade by `{command}` on {args.device} ({describe(args.device)}): FC-10 under "
        f"N(0, 1), {len(data.train)} training images, {args.epochs} epochs in {args.cycles} "
        f"cycles, noise on the last {args.noise:g} of each; temperature: the mean of the "
        "draws' configurational temperature (1 at the exact posterior), on every weight, the "
        "lit pixels' and the unlit ones', over every draw and over the last cycle's alone "
        f"(the first cycles' draws hold the chain's transient). One chain per setting, seed "
        f"{args.seed}; the two starts of a setting share their random numbers.\n"
    )
    atomic_write(results / f"{stem}.md", lambda t: t.write_text(markdown))
    plot(readings, results / f"{stem}.png")
    print(markdown)
    print(f"wrote {results}/{stem}.csv, .md and .png")
    print(combine(results, run))
    return 0


def combine(results: Path, run: dict) -> str:
    """Every seed's table under ``results`` run with ``run``'s settings (:data:`RUN`),
    pooled into csghmc_temperature_seeds.csv/.md: per setting, the temperature's mean, min
    and max over seeds (one chain each)."""
    files = sorted(results.glob("csghmc_temperature*.csv"))
    tables = [pd.read_csv(f) for f in files if not f.stem.endswith("_seeds")]
    want = [float(run[k]) for k in RUN]
    each = pd.concat(t for t in tables if set(RUN) <= set(t.columns)
                     and t[RUN].iloc[0].astype(float).tolist() == want)  # fmt: skip
    columns = ["temperature", "temperature_last_cycle", "temperature_last_cycle_lit", "test_acc"]
    settings = each.groupby("setting", sort=False)
    table = settings[columns].agg(["mean", "min", "max"])
    table.columns = [f"{c}_{stat}" for c, stat in table.columns]
    table.insert(0, "seeds", settings["seed"].nunique())
    table = table.reset_index()
    atomic_write(results / "csghmc_temperature_seeds.csv", lambda t: table.to_csv(t, index=False))
    settings_text = ", ".join(f"{k} {run[k]:g}" for k in RUN)
    markdown = (
        table.to_markdown(index=False, floatfmt=".3g")
        + "\n\nPooled by `python runs/csghmc_temperature.py --seed S` from every seed's "
        f"csghmc_temperature*.csv in this folder run with {settings_text}: seeds "
        f"{sorted(each['seed'].unique().tolist())}, one chain per setting and seed; mean, min "
        "and max over the seeds.\n"
    )
    atomic_write(results / "csghmc_temperature_seeds.md", lambda t: t.write_text(markdown))
    return markdown


def setting(args, data, bnn, mode, scale, on_lit, kind: str, lr: float, begin: str):
    """One cSGHMC run: its row and its draws' readings (draws,)."""
    per_cycle = max(1, args.epochs // args.cycles)
    guide, result = fit_csghmc(
        bnn, data, num_cycles=args.cycles, epochs_per_cycle=per_cycle,
        sample_fraction=SAMPLE_FRACTION, noise_fraction=args.noise, lr=lr,
        scale=scale if kind == "fisher" else None, init=mode if begin == "map" else None,
        seed=args.seed, device=args.device, progress=False,
    )  # fmt: skip
    draws = result.samples["weights"]  # (draws, P)
    read = {
        part: configurational_temperature(
            bnn, data, draws, mask=mask, center=mode, device=args.device
        )  # fmt: skip
        for part, mask in (("all", None), ("lit", on_lit), ("unlit", ~on_lit))
        if mask is None or mask.any()
    }
    clean = evaluate(ensemble_fn(bnn, guide, size=len(draws), runs=1), data.test.x, data.test.y)
    sd = draws.std(0).cpu()  # (P,)
    last = result.cycle == result.cycle.max()  # (draws,) the last cycle's
    row = {
        "setting": f"{kind} lr {lr:g} from {begin}",
        "scale": kind,
        "lr": lr,
        "start": begin,
        "draws": len(draws),
        **{
            f"temperature{'' if part == 'all' else '_' + part}": float(t.mean())
            for part, t in read.items()
        },
        **{
            f"temperature_last_cycle{'' if part == 'all' else '_' + part}": float(t[last].mean())
            for part, t in read.items()
        },  # fmt: skip
        "test_acc": 100 * float(clean["acc"]),
        "test_nll": float(clean["nll"]),
        "unlit_sd_median": float(sd[~on_lit].median()) if (~on_lit).any() else None,
        "wall_s": result.wall_time_s,
    }
    return row, read["all"]


def plot(readings: dict[str, torch.Tensor], path: Path) -> None:
    """Each setting's readings, draw by draw (cycle after cycle), against the exact
    posterior's 1."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (name, t), style in zip(readings.items(), itertools.cycle(["-", "--", ":"])):
        ax.plot(range(1, len(t) + 1), t.numpy(), style, marker="o", ms=2, label=name)
    ax.axhline(1.0, color="k", lw=1, label="exact posterior")
    ax.set(xlabel="draw", ylabel="configurational temperature", yscale="log",
           title="cSGHMC on FC-10: how hot are its draws?")  # fmt: skip
    ax.legend(fontsize=6, ncol=2)
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)

"""The exact posterior of FC-10 (Bayesian multinomial logistic regression, 7,850 weights) by
HMC on all 50,000 training images: its chains, their diagnostics and cost, and its
posterior predictive.

    python runs/exact_posterior.py                         # both priors, 4 chains each
    python runs/exact_posterior.py --priors normal --chains 2 --samples 100
    python runs/exact_posterior.py --quick                 # a slice, tiny chains, temp dirs
    python runs/exact_posterior.py --priors normal --chain 1   # one chain: a parallel worker

Each chain (Pyro's NUTS, or HMC with --kernel hmc, through pyro_bnn.mcmc.fit_mcmc; chain c
seeded --seed + c) is an artifact under <root>/hmc-chain/, so a killed run resumes chain by
chain. With --mass laplace (the default) the mass matrix is the Laplace covariance of
pyro_bnn.mcmc.laplace (an artifact under <root>/laplace/), fixed, and each chain starts
from an over-dispersed draw around its mode: the posterior's weights on neighbouring pixels
are so correlated that Pyro's adapted diagonal (--mass diag; chains from prior draws)
leaves NUTS at its tree-depth cap. Per prior it reports split
R-hat and the effective sample size over every weight (the worst, and where the worst
lie: weights on pixels that no training image lights, whose posterior is the prior, and
the rest; and the worst that independent draws of as many would show),
divergences, the wall time, the measured cost of one gradient of the log
posterior and so the leapfrog steps per draw, and the posterior predictive's test
accuracy, NLL and ECE (the mean over every kept draw). Under the scale mixture it also
reports how often the unlit pixels' weights fall in the spike, beside the prior's share,
and how many lit weights are bimodal (in the spike in 10-90% of draws). --normal-scores
samples each weight's normal score (pyro_bnn.mcmc.NormalScoreReparam), not the weight.
Priors: 'normal' (N(0, 1) on every weight) and 'scale-mixture' (the paper's eq. 2 prior).

Writes hmc_<arch>_n<train>.csv and .md (one row per prior; suffixed _scores with
--normal-scores) and a .png of the largest R-hat per pixel to --results (default
runs/results/exact_posterior/).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer.mcmc.util import initialize_model  # noqa: E402
from pyro.ops.integrator import potential_grad  # noqa: E402

from pyro_bnn import BayesianMLP, evaluate, load_mnist  # noqa: E402
from pyro_bnn.artifacts import artifact_dir, atomic_write, cached  # noqa: E402
from pyro_bnn.mcmc import (  # noqa: E402
    KERNELS,
    NormalScoreReparam,
    chain_diagnostics,
    fit_mcmc,
    laplace,
)
from pyro_bnn.predict import predictive_probs  # noqa: E402
from pyro_bnn.priors import ScaleMixtureNormal, make_prior  # noqa: E402
from runs.study.args import Parser, device, exit_timed, positive_int, started  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.plots import save_png  # noqa: E402

HERE = Path(__file__).resolve().parent
ARCH = "FC-10"
HMC_PRIORS = ("normal", "scale-mixture")  # the library PRIORS these chains run under
R_HAT_LIMIT = {"normal": 1.01, "scale-mixture": 1.05}  # the acceptance of each prior's chains
GRAD_REPEATS = 10  # gradients timed for the cost per gradient (median)
MASSES = ("laplace", "diag")  # the mass matrix: pyro_bnn.mcmc.laplace's, or Pyro's adapted one


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="runs/exact_posterior.py", description=__doc__.splitlines()[0])
    p.add_argument("--priors", nargs="+", choices=HMC_PRIORS, default=list(HMC_PRIORS))
    add_chain_options(p)
    p.add_argument("--chain", type=int, default=None,
                   help="run (or reuse) only this chain of each prior, and write no table: "
                   "a worker; a run without --chain then reads every chain")  # fmt: skip
    p.add_argument("--limit", type=positive_int, default=None, help="train on a slice")
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--results", default=str(HERE / "results" / "exact_posterior"))
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--quick", action="store_true", help="200 images, 2 short chains, diagonal mass, temp dirs"
    )
    args = p.parse_args(argv)
    if args.chain is not None and not 0 <= args.chain < args.chains:
        p.error(f"argument --chain: must be in [0, --chains = {args.chains}), got {args.chain}")
    if args.quick:
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.limit, args.chains, args.samples, args.warmup = 200, 2, 8, 8
        args.kernel, args.steps, args.root, args.results = "hmc", 4, temp, temp
        args.mass = "diag"  # the Laplace path's P x P algebra alone takes minutes on 2 cores
    command = started(args, "runs/exact_posterior.py", argv)
    data = load_mnist() if args.limit is None else load_mnist().head(args.limit)
    data = data.to(args.device)
    n_train = len(data.train.y)
    unlit = ~data.train.lit()  # (784,) pixels no training image lights
    if args.chain is not None:
        for prior in args.priors:
            run_chain(args, data, prior, args.chain)
        return 0
    rows, maps = [], {}
    for prior in args.priors:
        row, maps[prior] = prior_row(args, data, prior, unlit)
        rows.append(row)
    table = pd.DataFrame(rows)
    results = Path(args.results)
    tag = f"hmc_{ARCH}_n{n_train}" + scores_suffix(args)
    atomic_write(results / f"{tag}.csv", lambda tmp: table.to_csv(tmp, index=False))
    footer = (
        f"Made by `{command}` on {args.device} ({describe(args.device)}). R-hat is split "
        f"R-hat over {args.chains} chains; s_per_iteration counts warmup; "
        f"leapfrog_per_iteration = s_per_iteration / grad_ms, the gradient timed alone.\n"
    )
    shown = table.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v).set_index("prior")
    markdown = shown.T.to_markdown() + "\n\n" + footer
    atomic_write(results / f"{tag}.md", lambda tmp: tmp.write_text(markdown))
    plot(maps, unlit.reshape(28, 28).cpu(), results / f"{tag}.png")
    print(markdown)
    return 0


def add_chain_options(p) -> None:
    """The chains' options (:func:`chains` reads them), shared with runs/approximations.py."""
    p.add_argument("--chains", type=positive_int, default=4)
    p.add_argument("--samples", type=positive_int, default=300, help="draws kept per chain")
    p.add_argument("--warmup", type=positive_int, default=300, help="adaptation steps per chain")
    p.add_argument("--kernel", choices=KERNELS, default="nuts")
    p.add_argument("--max-tree-depth", type=positive_int, default=7, help="NUTS's cap")
    p.add_argument("--steps", type=positive_int, default=20, help="HMC's leapfrog steps")
    p.add_argument("--mass", choices=MASSES, default="laplace",
                   help="the Laplace covariance, fixed, or Pyro's adapted diagonal")  # fmt: skip
    p.add_argument("--normal-scores", action="store_true",
                   help="sample each weight's normal score Phi^-1(F(w)), F its prior's CDF, "
                   "not the weight (pyro_bnn.mcmc.NormalScoreReparam)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="chain c is seeded --seed + c")


def chains(args, data, prior: str) -> tuple[torch.Tensor, int, float]:
    """Every chain under ``prior``, run or reused: the draws (chains, samples, P), the
    divergences after warmup and the wall time (s) over the chains."""
    draws, divergences, wall = [], 0, 0.0
    for chain in range(args.chains):
        tensors, meta = run_chain(args, data, prior, chain)
        draws.append(tensors["weights"])
        divergences += meta["divergences"]
        wall += meta["wall_time_s"]
    return torch.stack(draws), divergences, wall  # (C, S, P)


def prior_row(args, data, prior: str, unlit: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Every chain under ``prior`` (run or reused): the table's row, and the largest R-hat
    over the ten classes per pixel (28, 28)."""
    weights, divergences, wall = chains(args, data, prior)  # (C, S, P)
    r_hat, ess = chain_diagnostics(weights)  # (P,) each
    # FC-10's flat weights: the (10, 784) matrix row by row, then the 10 biases
    on_unlit = torch.cat([unlit.expand(10, -1).reshape(-1), torch.zeros(10, dtype=torch.bool)])
    grad_ms = gradient_ms(prior, data, args.device, args.normal_scores)
    iterations = args.chains * (args.warmup + args.samples)
    bnn = model(prior).to(args.device)
    flat = weights.reshape(-1, weights.shape[-1]).to(args.device)  # (C S, P)
    scores = evaluate(lambda x: predictive_probs(bnn, flat, x).mean(0), data.test.x, data.test.y)
    row = {
        "arch": ARCH, "prior": prior, "kernel": args.kernel, "mass": args.mass,
        "normal_scores": args.normal_scores, "chains": args.chains,
        "warmup": args.warmup, "draws_per_chain": args.samples, "n_train": len(data.train.y),
        "r_hat_max": float(r_hat.max()), "r_hat_limit": R_HAT_LIMIT[prior],
        "r_hat_max_iid": iid_r_hat_max(weights.shape),
        "weights_over_limit": int((r_hat > R_HAT_LIMIT[prior]).sum()),
        "r_hat_max_unlit": float(r_hat[on_unlit].max()) if on_unlit.any() else None,
        "r_hat_max_lit": float(r_hat[~on_unlit].max()),
        "ess_min": float(ess.min()), "ess_median": float(ess.median()),
        "divergences": divergences, "wall_s": round(wall, 1),
        "s_per_iteration": wall / iterations, "grad_ms": grad_ms,
        "leapfrog_per_iteration": 1000 * wall / iterations / grad_ms,
        "test_acc": 100 * scores["acc"], "test_nll": scores["nll"], "test_ece": scores["ece"],
        "unlit_pixels": int(unlit.sum()),
        # a known answer: no training image lights these pixels, so their weights'
        # posterior is the prior; the draws' sd there should be the prior's
        "unlit_sd": float(weights[..., on_unlit].std()) if on_unlit.any() else None,
        "prior_sd": float(make_prior(prior).variance.sqrt()),
        **spike_shares(prior, weights, on_unlit),
    }  # fmt: skip
    return row, r_hat[: 10 * 784].reshape(10, 784).amax(0).reshape(28, 28).cpu()  # (C, px)


def spike_shares(prior: str, weights: torch.Tensor, on_unlit: torch.Tensor) -> dict:
    """Under the scale mixture, how often the draws (C, S, P) lie in the spike, |w| < 3
    times its sd: on the unlit pixels' weights, beside the prior's own share (the known
    answer there); and how many lit weights are bimodal, in the spike in 10-90% of draws."""
    base = make_prior(prior)
    if not isinstance(base, ScaleMixtureNormal):
        return {"spike_share_unlit": None, "spike_share_prior": None, "bimodal_lit": None}
    (narrow, p_narrow), (wide, p_wide) = sorted(
        [(base.sigma1, base.pi), (base.sigma2, 1 - base.pi)]
    )
    inside = (weights.abs() < 3 * narrow).double().mean((0, 1))  # (P,) share of draws
    expect = p_narrow * math.erf(3 / math.sqrt(2)) + p_wide * math.erf(
        3 * narrow / wide / math.sqrt(2)
    )
    lit = inside[~on_unlit]
    return {
        "spike_share_unlit": float(inside[on_unlit].mean()) if on_unlit.any() else None,
        "spike_share_prior": expect,
        "bimodal_lit": int(((lit >= 0.1) & (lit <= 0.9)).sum()),
    }


def iid_r_hat_max(shape: torch.Size, seed: int = 0) -> float:
    """The largest split R-hat over independent N(0, 1) draws of ``shape`` (chains, samples,
    P): what independent draws would show, the reference ``r_hat_max`` is read against
    (over thousands of weights a few exceed 1.01 by chance when chains are short; NUTS's
    draws, anti-correlated, can do better)."""
    g = torch.Generator().manual_seed(seed)
    return float(chain_diagnostics(torch.randn(*shape, generator=g))[0].max())


def model(prior: str) -> BayesianMLP:
    """FC-10 under ``prior``: N(0, 1) ('normal') or the paper's scale mixture."""
    return BayesianMLP(ARCH, prior=make_prior(prior))


def scores_suffix(args) -> str:
    """What --normal-scores adds to the names of the chains, the Laplace and the table."""
    return "_scores" if args.normal_scores else ""


def run_chain(args, data, prior: str, chain: int) -> tuple[dict, dict]:
    """Chain ``chain`` under ``prior``: its artifact, run now unless it is saved."""
    settings = {"kernel": args.kernel, "warmup": args.warmup, "num_samples": args.samples}
    settings |= (
        {"max_tree_depth": args.max_tree_depth}
        if args.kernel == "nuts"
        else {"num_steps": args.steps}
    )
    config = {"arch": ARCH, "prior": prior, "n_train": len(data.train.y), "seed": args.seed + chain}
    config |= settings | ({"mass": "laplace"} if args.mass == "laplace" else {})
    config |= {"normal_scores": True} if args.normal_scores else {}
    name = f"{ARCH}_{prior}{scores_suffix(args)}_chain{chain}_seed{args.seed}"

    def compute() -> tuple[dict, dict]:
        pre = preconditioner(args, data, prior) if args.mass == "laplace" else None
        _, result = fit_mcmc(model(prior), data, num_chains=1, seed=args.seed + chain,
                             device=args.device, progress=not args.no_progress, laplace=pre,
                             normal_scores=args.normal_scores, **settings)  # fmt: skip
        return {"weights": result.samples["weights"][0].cpu()}, {
            "divergences": sum(result.divergences)
        }

    return cached(artifact_dir(args.root, "hmc-chain", name), config, compute, log=print)


def preconditioner(args, data, prior: str) -> tuple[torch.Tensor, torch.Tensor]:
    """pyro_bnn.mcmc.laplace's mode and covariance under ``prior`` (of the normal scores
    with --normal-scores), an artifact under <root>/laplace/ (every chain of the prior
    shares it)."""
    config = {"arch": ARCH, "prior": prior, "n_train": len(data.train.y)}
    config |= {"normal_scores": True} if args.normal_scores else {}

    def compute() -> tuple[dict, dict]:
        start = time.perf_counter()
        mode, cov = laplace(model(prior), data, device=args.device,
                            normal_scores=args.normal_scores)  # fmt: skip
        return {"mode": mode.cpu(), "cov": cov.cpu()}, {"wall_time_s": time.perf_counter() - start}

    path = artifact_dir(args.root, "laplace", f"{ARCH}_{prior}{scores_suffix(args)}")
    tensors, _ = cached(path, config, compute, log=print)
    return tensors["mode"], tensors["cov"]


def gradient_ms(prior: str, data, device, normal_scores: bool = False) -> float:
    """Median milliseconds of one gradient of the log posterior on the whole training set
    (of the normal scores' if ``normal_scores``), the unit of a leapfrog step."""
    x, y = data.train.x, data.train.y
    pyro.set_rng_seed(0)
    sampled = model(prior).to(device)
    if normal_scores:
        sampled = pyro.poutine.reparam(sampled, config={"weights": NormalScoreReparam(device)})
    init, potential, _, _ = initialize_model(sampled, model_args=(x, y), max_plate_nesting=1)
    times = []
    for _ in range(GRAD_REPEATS + 1):  # the first call warms up
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        potential_grad(potential, init)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def plot(maps: dict[str, torch.Tensor], unlit: torch.Tensor, path: Path) -> None:
    """The largest split R-hat over the ten classes, per pixel, one panel per prior; the
    pixels that no training image lights outlined."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4.5 * len(maps), 4), squeeze=False)
    for ax, (prior, image) in zip(axes[0], maps.items()):
        shown = ax.imshow(image, cmap="magma")
        ax.contour(unlit.float(), levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set(title=f"{prior}: max R-hat per pixel", xticks=[], yticks=[])
        fig.colorbar(shown, ax=ax, fraction=0.046)
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)

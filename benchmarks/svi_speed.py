"""SVI step vs plain torch SGD step, the 100-sample predictive vs 100 plain forwards, and
one draw of weights (an EOT attack step's, 10 samples).

SVI steps timed: Pyro's Trace_ELBO step ('pyro', fit_svi(engine='pyro')), the fused stack
step for one model ('stack K=1', what fit_svi runs for the paper's model) and for K models
('stack K=7', reported per model), each eager and with ``torch.compile``.

Both sides run in the same process, interleaved, on real MNIST batches; each repeat gives a
ratio and the median ratio is reported, so machine noise mostly cancels.

    python benchmarks/svi_speed.py            # FC-100-100-10, batch 128
    python benchmarks/svi_speed.py --guide normal --repeats 7
    python benchmarks/svi_speed.py --stack-k 7 --no-compile
    python benchmarks/svi_speed.py --against 1adb7b6   # also time that commit's SVI step
    python benchmarks/svi_speed.py --device cuda        # both sides on the GPU

``--against REF`` extracts the library at a git commit into a temporary package and times
its SVI step and its weight draw in the same process, in rotating order with today's:
before/after without machine noise between runs. (A library from before 657dff6 sets Pyro's
``module_local_params`` at import; today's step runs under that setting anyway.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from refs import library_at

from pyro_bnn import MLP, load_mnist
from pyro_bnn.bnn import local_params
from pyro_bnn.predict import predictive_probs, sample_weights
from pyro_bnn.stack import stack_loss
from runs.study.args import device as device_arg
from runs.study.machine import describe


def timed(fn, n: int, device: torch.device = torch.device("cpu")) -> float:
    """Seconds per call of fn, over n calls (waiting for the GPU's queue on cuda)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - start) / n


def svi_step_of(lib, arch: str, guide_name: str, n: int, batch, device: torch.device):
    """A timed SVI step of library ``lib`` (today's or an older one): (bnn, guide, step)."""
    pyro.set_rng_seed(0)
    bnn = lib.BayesianMLP(arch).to(device)
    guide = lib.make_guide(guide_name, bnn, rho_init=-3.0)
    lib.bnn.init_guide(bnn, guide)
    guide.to(device)
    opt = torch.optim.SGD(guide.parameters(), lr=1e-3, momentum=0.95)
    elbo = lib.DatapointELBO(n)

    def step():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        elbo.differentiable_loss(bnn, guide, x, y, num_data=n).backward()
        opt.step()

    return bnn, guide, step


def draw_of(lib, bnn, guide, samples: int):
    """One draw of ``samples`` weight vectors by library ``lib``'s sample_weights."""
    return torch.no_grad()(lambda: lib.predict.sample_weights(bnn, guide, samples))


def stack_step_of(arch: str, k: int, n: int, batch, compile: bool, device: torch.device):
    """A timed step of k stacked paper BNNs (fit_stack's step): (k, step)."""
    import pyro_bnn

    pyro.set_rng_seed(0)
    bnn = pyro_bnn.BayesianMLP(arch).to(device)
    guide = pyro_bnn.make_guide("softplus-normal", bnn, rho_init=-3.0)
    pyro_bnn.init_guide(bnn, guide)
    guide.to(device)
    mu = guide.locs.weights.detach().expand(k, -1).clone().requires_grad_()  # (K, P)
    rho = guide.rhos.weights.detach().expand(k, -1).clone().requires_grad_()  # (K, P)
    opt = torch.optim.SGD([mu, rho], lr=1e-3, momentum=0.95)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(k)]

    def step():
        xs, ys = zip(*(batch() for _ in range(k)))  # each model its own minibatch
        opt.zero_grad(set_to_none=True)
        nll, kl = stack_loss(bnn, mu, rho, gens, torch.stack(xs), torch.stack(ys), n,
                             compile=compile)  # fmt: skip
        (nll + kl).sum().backward()
        opt.step()

    return k, step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="FC-100-100-10")
    p.add_argument("--guide", default="softplus-normal")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=300, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=100, help="predictive weight samples")
    p.add_argument("--draw-samples", type=int, default=10, help="weight samples per draw")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--against", default=None, help="a git commit whose SVI step to time too")
    p.add_argument("--stack-k", type=int, default=7, help="models in the stacked step")
    p.add_argument("--no-compile", action="store_true", help="time the eager stack only")
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    data = load_mnist().to(dev)
    n = len(data.train)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, n, (args.batch_size,), generator=gen).to(dev) for _ in range(64)]
    it = iter(range(10**9))

    def batch():
        idx = batches[next(it) % len(batches)]
        return data.train.x[idx], data.train.y[idx]

    net = MLP(args.arch).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.95)

    def plain_step():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    import pyro_bnn

    bnn, guide, svi_step = svi_step_of(pyro_bnn, args.arch, args.guide, n, batch, dev)
    draws = {"today": draw_of(pyro_bnn, bnn, guide, args.draw_samples)}
    base_step = None
    if args.against:
        base = library_at(args.against)
        base_bnn, base_guide, base_step = svi_step_of(base, args.arch, args.guide, n, batch, dev)
        draws[args.against] = draw_of(base, base_bnn, base_guide, args.draw_samples)

    stacks = {}
    for compiled in (False,) if args.no_compile else (False, True):
        for k in sorted({1, args.stack_k}):
            label = f"stack K={k}" + (" compiled" if compiled else "")
            stacks[label] = stack_step_of(args.arch, k, n, batch, compiled, dev)

    x_test = data.test.x
    fixed = [MLP(args.arch).to(dev) for _ in range(4)]

    @torch.no_grad()
    def plain_forwards():
        for i in range(args.samples):
            fixed[i % 4](x_test).softmax(-1)

    @torch.no_grad()
    def bnn_predictive():
        predictive_probs(bnn, sample_weights(bnn, guide, args.samples), x_test)

    step_ratios, pred_ratios, base_ratios, rows, draw_times = [], [], [], [], {}
    stack_ratios = {label: [] for label in stacks}
    timers = {"plain": plain_step, "svi": svi_step} | ({"base": base_step} if base_step else {})
    timers |= {label: step for label, (_, step) in stacks.items()}
    with pyro.validation_enabled(False), local_params(bnn, guide):  # as in fit_svi
        for fn in timers.values():
            timed(fn, 50, dev)  # warm up
        for r in range(args.repeats):
            order = list(timers)[r % len(timers) :] + list(timers)[: r % len(timers)]
            t = {name: timed(timers[name], args.steps, dev) for name in order}  # rotating order
            t_fwd, t_pred = timed(plain_forwards, 1, dev), timed(bnn_predictive, 1, dev)
            step_ratios.append(t["svi"] / t["plain"])
            for label, (k, _) in stacks.items():
                stack_ratios[label].append(t[label] / k / t["plain"])
            if base_step:
                base_ratios.append(t["base"] / t["plain"])
            pred_ratios.append(t_pred / t_fwd)
            for name in list(draws)[r % len(draws) :] + list(draws)[: r % len(draws)]:
                draw_times.setdefault(name, []).append(timed(draws[name], 50, dev))
            rows.append((t["plain"], t["svi"], t_fwd, t_pred, *(t[label] for label in stacks)))
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"machine: {describe(args.device)}, torch {torch.__version__}, pyro {pyro.__version__}")
    print(
        f"{args.arch}, batch {args.batch_size}, guide {args.guide}, "
        f"median of {args.repeats} repeats x {args.steps} steps"
    )
    print(f"plain SGD step      {med[0] * 1e3:8.3f} ms")
    print(
        f"SVI step (pyro)     {med[1] * 1e3:8.3f} ms   ratio {statistics.median(step_ratios):.2f}x "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in step_ratios)})"
    )
    for (label, ratios), t_stack in zip(stack_ratios.items(), med[4:]):
        print(
            f"SVI step ({label}) {t_stack * 1e3:8.3f} ms, ratio per model "
            f"{statistics.median(ratios):.2f}x "
            f"(per repeat: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    if base_step:
        print(
            f"SVI step at {args.against}  ratio {statistics.median(base_ratios):.2f}x "
            f"(per repeat: {', '.join(f'{r:.2f}' for r in base_ratios)}); today / then: "
            f"{statistics.median(a / b for a, b in zip(step_ratios, base_ratios)):.3f}"
        )
    today = draw_times["today"]
    print(f"draw of {args.draw_samples} weight vectors {statistics.median(today) * 1e3:8.3f} ms")
    if args.against:
        then = draw_times[args.against]
        print(
            f"draw at {args.against} {statistics.median(then) * 1e3:8.3f} ms; today / then: "
            f"{statistics.median(a / b for a, b in zip(today, then)):.3f}"
        )
    print(f"{args.samples} plain forwards  {med[2]:8.3f} s  (10,000 test images)")
    ratio = statistics.median(pred_ratios)
    print(
        f"{args.samples}-sample predictive {med[3]:8.3f} s   ratio {ratio:.2f}x "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in pred_ratios)})"
    )


if __name__ == "__main__":
    main()

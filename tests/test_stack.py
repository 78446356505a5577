"""The stacked SVI engine: its fused ELBO equals Pyro's Trace_ELBO, a stack of K models
trains each as it would train alone, and killed stacks resume where they were."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

import pyro_bnn.stack as stack_module
from pyro_bnn.bnn import BayesianMLP, DatapointELBO, init_guide, local_params
from pyro_bnn.data import MNIST, Split
from pyro_bnn.guides import make_guide
from pyro_bnn.priors import ScaleMixtureNormal
from pyro_bnn.stack import fit_stack, fused_kl
from pyro_bnn.train import fit_svi, sgd


@pytest.mark.parametrize("prior", [ScaleMixtureNormal(), dist.Normal(0.0, 0.5)])
def test_fused_elbo_equals_pyro_trace_elbo(small, prior):
    """Same noise, same parameters: the fused loss and its gradients are Pyro's."""
    bnn = BayesianMLP((20, 10), prior=prior)
    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    init_guide(bnn, guide)
    mu, rho = guide.locs.weights, guide.rhos.weights
    with torch.no_grad():  # spread rho over the whole range the paper sweeps, and beyond
        rho.copy_(torch.linspace(-30.0, 25.0, len(rho)))
    x, y, n = small.train.x[:64], small.train.y[:64], 2000

    pyro.set_rng_seed(7)
    with local_params(bnn, guide), pyro.validation_enabled(False):
        loss = DatapointELBO(n).differentiable_loss(bnn, guide, x, y, num_data=n)
    want = torch.autograd.grad(loss, [mu, rho])

    pyro.set_rng_seed(7)
    eps = torch.randn(len(mu))  # the draw SoftplusNormal.rsample made
    w, kl = fused_kl(prior, mu.unsqueeze(0), rho.unsqueeze(0), eps.unsqueeze(0))
    fused = F.cross_entropy(bnn.apply(x, w)[0], y) + kl[0] / n
    got = torch.autograd.grad(fused, [mu, rho])
    assert fused.item() == pytest.approx(loss.item(), rel=1e-5)
    for g, wanted in zip(got, want):
        torch.testing.assert_close(g, wanted, rtol=1e-4, atol=1e-5)


def test_compiled_kernel_equals_eager():
    """torch.compile fuses the same math: same draw, KL and gradients."""
    gen = torch.Generator().manual_seed(0)
    mu = (0.1 * torch.randn(3, 1000, generator=gen)).requires_grad_()
    rho = (-30 + 40 * torch.rand(3, 1000, generator=gen)).requires_grad_()
    eps = torch.randn(3, 1000, generator=gen)
    out = {}
    for compile in (False, True):
        w, kl = fused_kl(ScaleMixtureNormal(), mu, rho, eps, compile=compile)
        grads = torch.autograd.grad((w.sin().sum() + kl.sum()), [mu, rho])
        out[compile] = (w, kl, *grads)
    for a, b in zip(out[False], out[True]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _fit_alone(data, rho_init, seed, **kwargs):
    bnn = BayesianMLP((16, 10))
    guide = make_guide("softplus-normal", bnn, rho_init=rho_init)
    result = fit_svi(bnn, guide, data, seed=seed, progress=False, **kwargs)
    return result, guide


SETTINGS = dict(max_epochs=6, patience=1, optimizer=sgd(lr=0.02), batch_size=100)


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_stack_equals_one_at_a_time(small, float64):
    """Three models of different rho_init and seed, stopping early at different epochs:
    each stacked model's history and parameters equal its training alone. In float64, so
    that the batched and the single matmul kernels, which round differently on some CPUs,
    cannot flip a validation prediction."""
    data = small.head(600, 300)
    data = MNIST(*(Split(s.x.double(), s.y) for s in (data.train, data.val, data.test)))
    specs = [(-3.0, 0), (-5.0, 1), (-30.0, 2)]
    bnns = [BayesianMLP((16, 10)) for _ in specs]
    guides = [make_guide("softplus-normal", b, rho_init=r) for b, (r, _) in zip(bnns, specs)]
    stacked = fit_stack(bnns, guides, data, seeds=[s for _, s in specs], progress=False, **SETTINGS)
    stops = {r.epochs for r in stacked}
    assert len(stops) > 1, "the test needs models that stop at different epochs"
    for (rho_init, seed), result, guide in zip(specs, stacked, guides):
        alone, alone_guide = _fit_alone(data, rho_init, seed, **SETTINGS)
        assert (result.epochs, result.best_epoch) == (alone.epochs, alone.best_epoch)
        for a, b in zip(result.history, alone.history):
            assert a["val_acc"] == b["val_acc"]
            assert a["elbo"] == pytest.approx(b["elbo"], rel=1e-5)
        torch.testing.assert_close(guide.state_dict(), alone_guide.state_dict())


def test_stack_learns(small):
    """Two paper BNNs stacked on 2,000 real images beat chance by far in 8 epochs."""
    bnns = [BayesianMLP((50, 10)) for _ in range(2)]
    guides = [make_guide("softplus-normal", b, rho_init=r) for b, r in zip(bnns, (-3, -6))]
    results = fit_stack(
        bnns, guides, small, max_epochs=8, patience=None, optimizer=sgd(lr=0.01),
        progress=False,
    )  # fmt: skip
    for result in results:
        assert result.history[-1]["val_acc"] > 0.6  # chance is 0.1
        assert result.history[-1]["elbo"] > result.history[0]["elbo"]
        assert not result.stopped_early and result.epochs == 8


def test_killed_stack_resumes_with_members_at_different_epochs(tmp_path, monkeypatch):
    """Killed between two members' checkpoints (one is an epoch ahead), the stack resumes
    each member from its own epoch and ends where an uninterrupted stack ends."""
    from tests.conftest import toy_mnist

    data = toy_mnist()
    real, calls = stack_module.predictive, []

    def dying(*args, **kwargs):  # member 0 validates and saves epoch 3, then member 1 dies
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    def run(checkpoints):
        bnns = [BayesianMLP((8, 10)) for _ in range(2)]
        guides = [make_guide("softplus-normal", b, rho_init=r) for b, r in zip(bnns, (-3, -4))]
        results = fit_stack(
            bnns, guides, data, max_epochs=5, patience=None, optimizer=sgd(lr=0.01),
            checkpoints=checkpoints, progress=False,
        )  # fmt: skip
        return results, guides

    files = [tmp_path / "a.pt", tmp_path / "b.pt"]
    monkeypatch.setattr(stack_module, "predictive", dying)
    with pytest.raises(KeyboardInterrupt):
        run(files)
    assert [torch.load(f, weights_only=False)["epoch"] for f in files] == [3, 2]
    monkeypatch.setattr(stack_module, "predictive", real)
    resumed, resumed_guides = run(files)
    whole, whole_guides = run(None)
    for a, b in zip(resumed, whole):
        assert [h["val_acc"] for h in a.history] == [h["val_acc"] for h in b.history]
    for a, b in zip(resumed_guides, whole_guides):
        torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)


def test_stack_moves_between_devices(tmp_path):
    """A stack checkpointed on a GPU goes on on a CPU. Its checkpoints hold a CUDA
    generator's state (16 bytes: seed and offset): a finished member needs none, and an
    unfinished one goes on with a generator seeded by (seed, epoch), with a warning."""
    from tests.conftest import toy_mnist

    data, file, copy = toy_mnist(), tmp_path / "a.pt", tmp_path / "b.pt"

    def run(ckpt, kill_at=None):
        def kill(entry):
            if entry["epoch"] == kill_at:
                raise KeyboardInterrupt  # before this epoch's checkpoint

        bnn = BayesianMLP((8, 10))
        guide = make_guide("softplus-normal", bnn, rho_init=-3)
        result = fit_stack([bnn], [guide], data, max_epochs=4, patience=None,
                           optimizer=sgd(lr=0.01), checkpoints=[ckpt], callbacks=[kill],
                           progress=False)  # fmt: skip
        return result[0], guide

    def from_a_gpu(path):
        state = torch.load(path, weights_only=False)
        state["generator"] = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator saves
        torch.save(state, path)

    with pytest.raises(KeyboardInterrupt):
        run(file, kill_at=3)
    from_a_gpu(file)
    copy.write_bytes(file.read_bytes())
    with pytest.warns(UserWarning, match="from epoch 3 on cpu"):
        moved, guide = run(file)
    assert [h["epoch"] for h in moved.history] == [1, 2, 3, 4]
    with pytest.warns(UserWarning):
        twin, twin_guide = run(copy)  # the same (seed, epoch) generator: the same run
    assert twin.history == moved.history
    torch.testing.assert_close(twin_guide.state_dict(), guide.state_dict(), rtol=0, atol=0)
    from_a_gpu(file)
    again, loaded = run(file)  # finished: loads and draws nothing, without a warning
    assert again.history == moved.history
    torch.testing.assert_close(loaded.state_dict(), guide.state_dict(), rtol=0, atol=0)


def test_bad_stacks_name_the_argument(small):
    data = small.head(200, 100)
    one, two = BayesianMLP((8, 10)), BayesianMLP((9, 10))
    guides = [make_guide("softplus-normal", m) for m in (one, two)]
    with pytest.raises(ValueError, match="arch"):
        fit_stack([one, two], guides, data, progress=False)
    with pytest.raises(ValueError, match="equal length"):
        fit_stack([one], guides, data, progress=False)
    laplace = BayesianMLP((8, 10), prior=dist.Laplace(0.0, 1.0))
    with pytest.raises(ValueError, match="prior"):
        fit_stack([laplace], [make_guide("softplus-normal", laplace)], data, progress=False)
    with pytest.raises(ValueError, match="engine='stack' cannot fit.*guide"):
        fit_svi(one, make_guide("normal", one), data, engine="stack", progress=False)
    with pytest.raises(ValueError, match="engine must be"):
        fit_svi(one, guides[0], data, engine="fast", progress=False)
    with pytest.raises(ValueError, match="seeds"):
        fit_stack([one], guides[:1], data, seeds=[0, 1], progress=False)


def test_controls_hold_sigma_and_drop_the_kl(small):
    """A stack of a BNN, a BNN whose sigma is held, and a net trained with the same held
    noise and no KL: the held rows keep rho_init exactly, every mu moves, and the
    no-KL member's objective is its likelihood alone."""
    bnns = [BayesianMLP((16, 10)) for _ in range(3)]
    guides = [make_guide("softplus-normal", b, rho_init=-3.0) for b in bnns]
    results = fit_stack(
        bnns, guides, small.head(500, 200), seeds=[0, 0, 0], kl_weights=[1, 1, 0],
        train_sigma=[True, False, False], max_epochs=2, patience=None,
        optimizer=sgd(lr=0.05), progress=False,
    )  # fmt: skip
    rhos = [g.rhos.weights.detach() for g in guides]
    assert not torch.equal(rhos[0], torch.full_like(rhos[0], -3.0))
    for rho in rhos[1:]:
        assert torch.equal(rho, torch.full_like(rho, -3.0))
    record = results[2].history[-1]
    assert record["elbo"] == pytest.approx(-record["nll"]) and record["kl"] > 0
    held = results[1].history[-1]
    assert held["elbo"] == pytest.approx(-held["nll"] - held["kl"])


def test_no_kl_step_is_the_likelihood_gradient(small):
    """One full-batch SGD step with kl_weight 0 moves mu by lr times the gradient of the
    mean NLL at the drawn weights, and nothing else; with the KL the step differs."""
    data = small.head(256, 100)
    lr, seed = 0.1, 3

    def stepped(kl_weight):
        bnn = BayesianMLP((8, 10))
        guide = make_guide("softplus-normal", bnn, rho_init=-2.0)
        fit_stack(
            [bnn], [guide], data, seeds=[seed], kl_weights=[kl_weight], train_sigma=[False],
            max_epochs=1, patience=None, batch_size=256, optimizer=sgd(lr=lr, momentum=0.0),
            progress=False,
        )  # fmt: skip
        return guide.locs.weights.detach()

    bnn = BayesianMLP((8, 10))
    guide = make_guide("softplus-normal", bnn, rho_init=-2.0)
    pyro.set_rng_seed(seed)
    init_guide(bnn, guide)
    mu0 = guide.locs.weights.detach().clone().requires_grad_()
    eps = torch.randn(len(mu0), generator=torch.Generator().manual_seed(seed))
    w = mu0 + F.softplus(torch.tensor(-2.0)) * eps
    nll = F.cross_entropy(bnn.apply(data.train.x, w), data.train.y)
    (grad,) = torch.autograd.grad(nll, mu0)
    torch.testing.assert_close(stepped(0.0), mu0.detach() - lr * grad, rtol=1e-5, atol=1e-6)
    assert (stepped(1.0) - (mu0.detach() - lr * grad)).abs().max() > 1e-4


def test_control_arguments_are_checked(small):
    bnn = BayesianMLP((8, 10))
    guide = make_guide("softplus-normal", bnn)
    with pytest.raises(ValueError, match="kl_weights must have one entry per model"):
        fit_stack([bnn], [guide], small, kl_weights=[1, 0], progress=False)
    with pytest.raises(ValueError, match="kl_weights must be finite and >= 0"):
        fit_stack([bnn], [guide], small, kl_weights=[-1.0], progress=False)

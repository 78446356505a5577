"""pyro_bnn.attacks.apgd: torchattacks' APGD on decision rules reaches the exact robust
accuracy of a linear net in L2 and L-inf; the worst case over attacks is taken per example."""

import math

import pytest
import torch

from pyro_bnn.attacks import PGDResult, eot_model, pgd_attack
from pyro_bnn.attacks.apgd import RuleModule, apgd_attack, worst_case
from pyro_bnn.data import X_MAX


def linear_problem(n=200, d=20, classes=4, seed=0):
    """A linear net around the middle of the box, c, and points near c: their exact
    distance to the nearest decision boundary, in L2 and in L-inf (the margin over the
    dual norm of the weight difference). Budgets up to 0.3 never reach the box's walls."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, d, generator=g, dtype=torch.float64)
    b = 0.05 * torch.randn(classes, generator=g, dtype=torch.float64)
    c = torch.full((d,), X_MAX / 2, dtype=torch.float64)
    x = c + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)

    def fn(v):
        return (v - c) @ w.T + b

    logits = fn(x)
    y = logits.argmax(1)
    gap = logits.gather(1, y[:, None]) - logits  # (N, C)
    diff = w[y][:, None, :] - w[None]  # (N, C, D)
    dist = {
        "L2": (gap / diff.norm(dim=-1)).scatter(1, y[:, None], math.inf).min(1).values,
        "Linf": (gap / diff.abs().sum(-1)).scatter(1, y[:, None], math.inf).min(1).values,
    }
    return fn, x, y, dist


@pytest.mark.parametrize("norm,eps", [("L2", 0.02), ("Linf", 0.005)])
def test_apgd_reaches_the_exact_robust_accuracy_of_a_linear_net(norm, eps):
    """Targeted APGD (a linear margin per target) finds every point within eps; APGD-CE
    and APGD-DLR never fool a point beyond it; the ensemble's worst case is exact."""
    fn, x, y, dist = linear_problem()
    exact = float((dist[norm] > eps).double().mean())
    assert 0.3 < exact < 0.7  # the budget matters
    results = {}
    for loss in ("ce", "dlr", "dlr-targeted"):
        result = apgd_attack(fn, x, y, eps, norm=norm, loss=loss, steps=50, passes=1)
        size = result.r.norm(dim=1) if norm == "L2" else result.r.abs().amax(1)
        assert (size <= eps * (1 + 1e-6)).all()
        assert (x + result.r).min() >= 0 and (x + result.r).max() <= X_MAX
        fooled = result.robust == 0
        assert (dist[norm][fooled] <= eps * (1 + 1e-6)).all()  # only points within eps
        results[loss] = result
    assert results["dlr-targeted"].accuracy() == pytest.approx(exact, abs=1 / len(y))
    assert worst_case(list(results.values())).accuracy() == pytest.approx(exact, abs=1 / len(y))


def test_the_rule_module_averages_draws_without_underflow():
    """Two draws of one logit row, one extreme: the module's output is the log of the
    mean probability, finite where a probability underflows, with a gradient."""
    logits = torch.tensor([[[0.0, 200.0]], [[0.0, 0.0]]])  # (K=2, N=1, C=2)
    x = torch.zeros(1, 3, requires_grad=True)

    def fn(v):
        return logits + v.sum()

    out = RuleModule(fn, "logits")(x)
    want = torch.log(torch.softmax(logits, -1).mean(0))  # p_0 of draw 0 is exp(-200)
    torch.testing.assert_close(out.detach(), want)
    assert torch.isfinite(out).all()


def test_apgd_with_eot_on_a_noisy_rule():
    """A linear net whose inputs get fresh noise on every call: with 8-sample EOT, APGD
    fools most points that sit well inside eps of the noiseless boundary."""
    fn, x, y, dist = linear_problem(n=100)
    g = torch.Generator().manual_seed(1)

    def noisy(v):  # (N, D) -> (1, N, C) probabilities of one noisy draw
        noise = 0.001 * torch.randn(v.shape, generator=g, dtype=v.dtype)
        return torch.softmax(fn(v + noise), -1)[None]

    result = apgd_attack(noisy, x, y, 0.02, eot=8, steps=30, output="probs", passes=8)
    inside = dist["L2"] < 0.01
    assert inside.sum() > 10 and (result.robust[inside] < 0.5).double().mean() > 0.9


def test_worst_case_takes_the_worst_attack_per_example():
    eps = torch.ones(3)
    a = PGDResult(torch.zeros(3, 2), torch.tensor([1.0, 0.0, 0.5]), eps, {"attack": "a"})
    b = PGDResult(torch.ones(3, 2), torch.tensor([0.0, 1.0, 0.5]), eps, {"attack": "b"})
    worst = worst_case([a, b])
    assert worst.robust.tolist() == [0.0, 0.0, 0.5]
    assert worst.r[:, 0].tolist() == [1.0, 0.0, 0.0]  # a tie keeps the first
    assert worst.config["picked"] == [2, 1]
    with pytest.raises(ValueError, match="at least one"):
        worst_case([])


def test_the_ensemble_is_never_weaker_than_its_members():
    fn, x, y, _ = linear_problem(n=100)
    members = [pgd_attack(fn, x, y, 0.02, steps=10, passes=1, progress=False),
               apgd_attack(fn, x, y, 0.02, steps=10, passes=1)]  # fmt: skip
    worst = worst_case(members)
    assert all(worst.accuracy() <= m.accuracy() for m in members)


def test_bad_arguments_are_named():
    fn, x, y, _ = linear_problem(n=5)
    with pytest.raises(ValueError, match="norm must be one of"):
        apgd_attack(fn, x, y, 0.3, norm="L1")
    with pytest.raises(ValueError, match="loss must be one of"):
        apgd_attack(fn, x, y, 0.3, loss="margin")
    with pytest.raises(ValueError, match="eps"):
        apgd_attack(fn, x, y, -1.0)
    assert eot_model  # the EOT path is the module's: one call of fn per forward


def test_linf_pgd_never_fools_a_point_beyond_eps_and_nearly_reaches_the_exact_accuracy():
    fn, x, y, dist = linear_problem()
    eps = 0.005
    exact = float((dist["Linf"] > eps).double().mean())
    result = pgd_attack(fn, x, y, eps, norm="Linf", steps=100, restarts=3, passes=1,
                        progress=False)  # fmt: skip
    assert (result.r.abs().amax(1) <= eps * (1 + 1e-9)).all()
    assert (dist["Linf"][result.robust == 0] <= eps * (1 + 1e-6)).all()
    assert exact <= result.accuracy() <= exact + 0.05


@pytest.mark.parametrize("attack", ["APGD", "APGDT"])
def test_apgd_keeps_no_graph_across_restarts_and_finds_what_torchattacks_finds(attack):
    """torchattacks' runs hand back best points that still hold their autograd graphs, and
    its restarts keep them (20 GB on 500 MNIST images): ours come back detached, with the
    same values."""
    import torchattacks

    from pyro_bnn.attacks import apgd

    fn, x, y, _ = linear_problem(n=30)
    module = RuleModule(lambda v: fn(v.double()).float(), "logits")
    images = (x.float() / X_MAX)[:, None, None, :]
    kwargs = {"norm": "L2", "eps": 0.02 / X_MAX, "steps": 5, "n_restarts": 3, "seed": 0}
    extra = {"n_classes": 4} if attack == "APGDT" else {"loss": "ce"}
    theirs = getattr(torchattacks, attack)(module, **kwargs, **extra)(images, y)
    ours = getattr(apgd, f"_Detached{attack}")(module, **kwargs, **extra)(images, y)
    assert theirs.grad_fn is not None and ours.grad_fn is None  # the leak, and its fix
    torch.testing.assert_close(ours, theirs.detach())

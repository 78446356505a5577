"""runs/study/tables.py: the noise control's norms, the white-box accuracy curve, and the
sigma and fixed-noise controls."""

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from pyro_bnn.attacks import distortion
from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.data import X_MAX
from pyro_bnn.evaluate import as_probs
from pyro_bnn.guides import make_guide
from pyro_bnn.nets import MLP
from runs.study import tables


def test_noise_at_norm_leaves_the_intended_norm_inside_the_box(small):
    x = small.test.x[:200]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    norms = torch.linspace(0.5, 3.0, len(x))  # the range of the study's perturbation norms
    norms[0], norms[1] = 0.0, 100.0  # nothing to add; more than the box can hold
    # the defect: noise scaled to the norm, then clipped, keeps about 0.75x of it on MNIST
    clipped = (x + z * (norms / z.norm(dim=1))[:, None]).clamp(0.0, X_MAX)
    naive = (clipped - x).norm(dim=1)[2:] / norms[2:]
    assert 0.65 < naive.median() < 0.85

    x_noise, achieved, reachable = tables.noise_at_norm(x, z, norms)
    assert x_noise.shape == x.shape and x_noise.dtype == x.dtype
    assert x_noise.min() >= 0 and x_noise.max() <= X_MAX
    assert torch.allclose(achieved, (x_noise - x).norm(dim=1))
    assert reachable.tolist() == [True, False] + [True] * (len(x) - 2)
    rel = (achieved[2:] / norms[2:] - 1).abs()
    assert rel.max() < 1e-4, rel.max()
    assert torch.equal(x_noise[0], x[0])  # norm 0: no noise
    # unreachable: every pixel on the face of the box its noise points to, short of 100
    face = torch.where(z[1] > 0, X_MAX, torch.where(z[1] < 0, 0.0, x[1]))
    assert torch.allclose(x_noise[1], face, atol=1e-5) and achieved[1] < 100


def test_noise_at_norm_rejects_bad_shapes_and_norms():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="norms"):
        tables.noise_at_norm(x, x, torch.ones(2))
    with pytest.raises(ValueError, match=">= 0"):
        tables.noise_at_norm(x, x, torch.tensor([1.0, -1.0, 1.0]))


def test_noise_control_scores_noise_of_the_intended_norm(small, monkeypatch):
    n = 60
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(n, 784, generator=g)
    x = small.test.x[:n]
    scale = torch.linspace(1.0, 3.0, n) / direction.norm(dim=1)
    r = (x + direction * scale[:, None]).clamp(0.0, X_MAX) - x  # perturbations in the box
    success = torch.arange(n) % 5 != 0
    r[~success] = 0.0  # failed attacks leave r = 0
    norms = r.norm(dim=1)  # about 0.75 to 2.2, the range of the study's perturbations
    attack = tables.AttackSet(
        source=SimpleNamespace(name="src"),
        tensors={"r": r, "success": success, "y": small.test.y[:n], "index": torch.arange(n)},
        meta={},
        split="test",
    )
    zoo = tables.Zoo(seed=0, bnns={}, plains={0.0: torch.nn.Linear(784, 10)}, sources=[], pool=[])
    scored = []  # every input the control scores: the adversarial and the noisy examples
    evaluate = tables.evaluate
    monkeypatch.setattr(tables, "evaluate", lambda fn, x, y: scored.append(x) or evaluate(fn, x, y))

    frame = tables.noise_control(zoo, [attack], small, runs=1, seed=0)

    assert len(scored) == 2
    for x_in in scored:  # each at the perturbation's L2 norm, per example, inside the box
        assert x_in.min() >= 0 and x_in.max() <= X_MAX + 1e-6
        moved = (x_in - x).norm(dim=1)
        assert torch.equal(moved[~success], torch.zeros(int((~success).sum())))
        ratio = moved[success] / norms[success]
        assert (ratio - 1).abs().max() < 1e-4, f"median achieved/intended {ratio.median():.3f}"
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["l2_intended"] == pytest.approx(float(norms[success].median()), rel=1e-6)
    assert row["l2_achieved"] == pytest.approx(row["l2_intended"], rel=1e-4)
    assert row["l2_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert row["n_unreachable"] == 0
    assert 0 <= row["acc_noise"] <= 100 and 0 <= row["acc_adv"] <= 100


def _toy_model(x: torch.Tensor) -> torch.Tensor:
    """Class 1 where x[:, 0] > 1, else class 0: probs (N, 2)."""
    logit = 50 * (x[:, 0] - 1)
    return torch.stack([-logit, logit], dim=1).softmax(-1)


def test_whitebox_curve_scores_successes_only_at_every_multiple():
    # every example is class 0; the model flips to class 1 once x0 passes 1
    x = torch.tensor([[0.5, 0], [0.5, 0], [0.5, 0], [0.5, 0], [0.5, 0], [1.5, 0]])
    r = torch.tensor([[0.0, 0], [0.0, 0], [0.6, 0], [0.45, 0], [0.52, 0], [0.0, 0]])
    # 0, 1: the attack failed (r = 0, right when clean); 2, 4: past the boundary at r;
    # 3: short of it at r and 1.1 r (a stochastic model's draw can be right at its r);
    # 5: misclassified already
    success = torch.tensor([False, False, True, True, True, True])
    tensors = {"r": r, "success": success, "y": torch.zeros(6, dtype=torch.long)}

    curve = tables.whitebox_curve(_toy_model, x, tensors)
    frame = tables.whitebox([("bnn", "eot k=4", -3.0, distortion(r, success), curve)])

    assert tables.WHITEBOX_MULTIPLES == (1.0, 1.1, 1.25, 1.5, 2.0)
    assert frame["multiplier"].tolist() == list(tables.WHITEBOX_MULTIPLES)
    assert "acc_under_attack" not in frame.columns
    # the failures are not scored as clean: 1 of the 4 successes is right at r and 1.1 r
    assert frame["acc"].tolist() == pytest.approx([25.0, 25.0, 0.0, 0.0, 0.0])
    assert (frame["n_scored"] == 4).all() and (frame["n"] == 6).all()
    assert frame["success_rate"].tolist() == pytest.approx([4 / 6] * 5)


def test_whitebox_curve_of_an_attack_that_failed_everywhere_is_nan():
    x = torch.full((3, 2), 0.5)
    tensors = {"r": torch.zeros(3, 2), "success": torch.zeros(3, dtype=torch.bool)}
    tensors["y"] = torch.zeros(3, dtype=torch.long)
    curve = tables.whitebox_curve(_toy_model, x, tensors, multiples=(1.0, 2.0))
    assert [p["multiplier"] for p in curve] == [1.0, 2.0]
    assert all(p["n_scored"] == 0 and p["acc"] != p["acc"] for p in curve)  # nan


def _zoo_of(net, rhos):
    """A Zoo of BNNs of net's arch, each with a fresh guide at rho_init, and net as lambda 0."""
    zoo_bnns = {}
    for rho in rhos:
        bnn = BayesianMLP(net.widths, in_features=net.in_features)
        guide = make_guide("softplus-normal", bnn, rho_init=rho)
        init_guide(bnn, guide)
        zoo_bnns[rho] = (bnn, guide)
    return tables.Zoo(0, zoo_bnns, {0.0: net}, [], [])


def test_sigma_moves_sees_a_moved_tensor_and_nothing_else():
    net = MLP((5, 3), in_features=4)
    zoo = _zoo_of(net, [-3.0])
    bnn, guide = zoo.bnns[-3.0]
    with torch.no_grad():  # move the last bias's sigma up by 50%
        rhos = guide.rhos.weights
        target = 1.5 * torch.nn.functional.softplus(torch.tensor(-3.0))
        rhos[-3:] = torch.log(torch.expm1(target))
    frame = tables.sigma_moves(zoo).set_index("tensor")
    assert list(frame.index) == list(bnn.shapes)
    assert frame.loc["layers.1.bias", "pct_moved"] == 100
    assert frame.loc["layers.1.bias", "median_ratio"] == pytest.approx(1.5, rel=1e-5)
    others = frame.drop(index="layers.1.bias")
    assert (others["pct_moved"] == 0).all() and (others["median_ratio"] - 1).abs().max() < 1e-6


def test_fixed_noise_control_is_the_plain_net_when_the_noise_vanishes(small):
    torch.manual_seed(0)
    net = MLP((20, 10)).eval().requires_grad_(False)
    zoo = _zoo_of(net, [-30.0, -1.0])
    data = small
    frame = tables.fixed_noise_control(zoo, [], data, runs=5, bnn_mult=1.0, keep_failures=True)
    assert list(frame["source"]) == ["clean", "clean"]
    acc = frame.set_index("param")["acc"]
    plain = 100 * float((net(data.test.x).argmax(-1) == data.test.y).double().mean())
    assert acc[-30.0] == pytest.approx(plain)  # sigma 1e-13: the plain net itself
    assert abs(acc[-1.0] - plain) > 1  # sigma 0.31 on every weight changes the predictions


def test_a_set_with_no_survivors_scores_nan_not_an_error():
    net = torch.nn.Linear(784, 10)
    row = tables._score(as_probs(net), torch.zeros(0, 784), torch.zeros(0, dtype=torch.long))
    assert row["n"] == 0 and math.isnan(row["acc"])


def test_logit_gaps_flag_the_nets_whose_probabilities_underflow(small):
    """A net whose output layer is scaled up by s has its logit gaps scaled by s: past the
    float32 underflow gap the table says so. A BNN gets rows for its draws and its
    posterior mean."""
    net = MLP("FC-20-10")
    big = MLP("FC-20-10")
    last = len(list(net.parameters())) - 2  # the output layer's weight and bias
    with torch.no_grad():
        for i, (p, q) in enumerate(zip(net.parameters(), big.parameters())):
            q.copy_(1000 * p if i >= last else p)
    bnn = BayesianMLP((20, 10))
    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    init_guide(bnn, guide)
    zoo = tables.Zoo(0, {-3.0: (bnn, guide)}, {0.0: net}, [], [], matched={0.0: big})
    gaps = tables.logit_gaps(zoo, small, draws=3).set_index("kind")
    assert list(gaps.index) == ["bnn", "bnn-mu", "plain", "plain-matched"]
    ratio = gaps.loc["plain-matched", "gap_median"] / gaps.loc["plain", "gap_median"]
    assert ratio == pytest.approx(1000, rel=1e-3)
    assert gaps.loc["plain", "pct_over_underflow"] == 0
    assert gaps.loc["plain-matched", "pct_over_underflow"] > 50
    assert tables.UNDERFLOW_GAP == pytest.approx(87.34, abs=0.01)


def test_attack_summary_sets_the_source_and_the_authors_beside_the_set(small):
    """A linear source with known weights: its accuracy and loss (cross-entropy plus the
    eq. 6 penalty) on the split, and the authors' notebook row for its arch and lambda on
    the paper protocol's sets alone."""
    torch.manual_seed(0)
    net = MLP((10,)).requires_grad_(False)  # frozen, as as_source leaves a source
    net.layers[0].weight.mul_(30)  # logits large enough that Keras' clip binds
    n = 50
    r = torch.zeros(n, 784)
    success = torch.arange(n) < 10
    r[success, 0] = 0.5
    tensors = {"r": r, "success": success, "y": small.val.y[:n], "index": torch.arange(n)}
    source = SimpleNamespace(name="FC-10_lam0.01_seed0", arch="FC-10", lam=1e-2, net=net)
    config = {"protocol": "paper", "attack": {"r_init": 0.02, "prob_clip": 1e-7}}
    meta = {"summary": distortion(r, success), "wall_time_s": 1.0, "config": config}
    attack = tables.AttackSet(source=source, tensors=tensors, meta=meta, split="val")
    theirs = tables.attack_summary([attack], small, authors=True).iloc[0]
    start = net(small.val.x[:n] + 0.02).softmax(-1)  # the paper attack's first point
    inside = (start > 1e-7) & (start < 1 - 1e-7)
    live = inside.scatter(-1, small.val.y[:n, None], False).any(-1)
    assert 0 < live.sum() < n
    assert theirs["live_share"] == pytest.approx(float(live.double().mean()))
    assert theirs["success_rate_live"] == pytest.approx(float(success[live].double().mean()))
    logits = net(small.val.x)
    weight = net.layers[0].weight  # eq. 6: lambda * sum w^2 / (units of the layer, 10)
    p = logits.softmax(-1)[torch.arange(len(logits)), small.val.y].clamp(1e-7, 1 - 1e-7)
    assert (p == 1e-7).any()  # the clip binds on this net
    want_loss = -p.log().mean() + 1e-2 * weight.square().sum() / 10
    assert theirs["source_loss"] == pytest.approx(float(want_loss), rel=1e-5)
    want_acc = 100 * float((logits.argmax(-1) == small.val.y).double().mean())
    assert theirs["source_acc"] == pytest.approx(want_acc)
    assert theirs["n_success"] == 10 and theirs["authors_success_rate"] == 772 / 10_000
    assert theirs["authors_distortion"] == 0.0013 and theirs["authors_val_acc"] == 92.67
    rigorous = replace(attack, meta={**meta, "config": {"protocol": "rigorous"}})
    ours = tables.attack_summary([rigorous], small).iloc[0]  # no authors, no Keras clip
    assert ours[["authors_success_rate", "authors_val_acc", "live_share"]].isna().all()


def test_table2_reads_the_papers_cell_of_each_source_not_of_its_position(small):
    """Sets of a subset of the 12 sources, out of the paper's order: each row's 'paper'
    figure is its own source's (FC-1200-1200-10 at lambda 1 is the paper's last row)."""
    from runs.study import paper

    n = 20
    tensors = {"r": torch.zeros(n, 784), "success": torch.ones(n, dtype=torch.bool),
               "y": small.val.y[:n], "index": torch.arange(n)}  # fmt: skip
    sources = [("FC-1200-1200-10", 1.0), ("FC-10", 0.0), ("FC-100-100-10", 0.0)]
    sets = [
        tables.AttackSet(
            SimpleNamespace(name=f"{arch}_lam{lam:g}", arch=arch, lam=lam), tensors, {}, "val"
        )  # fmt: skip
        for arch, lam in sources
    ]
    plains = {1e-2: torch.nn.Linear(784, 10), 0.5: torch.nn.Linear(784, 10)}
    zoo = tables.Zoo(seed=0, bnns={}, plains=plains, sources=[], pool=[])
    got = tables.table2(zoo, sets, small, runs=1, bnn_mult=1.5, plain_mult=3.0,
                        keep_failures=False)  # fmt: skip
    col = paper.LAMBDAS.index(1e-2)
    none = -1.0  # no such cell in the paper: lambda 0.5, and FC-100-100-10 as a source
    expected = [paper.TABLE2_PLAIN[11][col], none, paper.TABLE2_PLAIN[0][col], none, none, none]
    assert got["paper"].astype(float).fillna(none).tolist() == expected

import pytest
import torch

from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.guides import make_guide
from pyro_bnn.predict import sample_weights
from pyro_bnn.pruning import prune, prune_mask, snr


@pytest.fixture
def bnn_and_guide():
    bnn = BayesianMLP((4, 3), in_features=5)  # tensors of 20, 4, 12 and 3 weights
    guide = make_guide("softplus-normal", bnn, rho_init=-2.0)
    init_guide(bnn, guide)
    with torch.no_grad():
        guide.locs.weights.copy_(torch.arange(1, 40, dtype=torch.float32))  # SNR grows with index
        guide.rhos.weights.fill_(0.0)
    return bnn, guide


def test_global_ranking_removes_the_lowest_snr_overall(bnn_and_guide):
    bnn, guide = bnn_and_guide
    removed = prune_mask(bnn, guide, 0.5, "global")
    assert removed.sum() == round(0.5 * 39)
    assert removed[:20].all() and not removed[20:].any()  # the first 20 have the lowest SNR


def test_per_tensor_ranking_removes_a_share_of_every_tensor(bnn_and_guide):
    bnn, guide = bnn_and_guide
    removed = prune_mask(bnn, guide, 0.5, "tensor")
    per_tensor = [chunk.sum().item() for chunk in removed.split(bnn.sizes)]
    assert per_tensor == [10, 2, 6, 2]  # round(0.5 * n) in each of 20, 4, 12, 3
    assert removed[:10].all() and not removed[10:20].any()  # lowest within the first tensor


def test_pruned_weights_are_exactly_zero_and_others_untouched(bnn_and_guide):
    bnn, guide = bnn_and_guide
    before = guide.locs.weights.detach().clone()
    pruned = prune(bnn, guide, 0.75, "tensor")
    removed = prune_mask(bnn, guide, 0.75, "tensor")
    w = sample_weights(bnn, pruned, 50)
    assert torch.all(w[:, removed] == 0)
    assert torch.all(w[:, ~removed].std(0) > 0.1)  # kept weights still vary
    torch.testing.assert_close(guide.locs.weights.detach(), before)  # the original is untouched
    torch.testing.assert_close(
        snr(bnn, guide), before / torch.nn.functional.softplus(torch.zeros(1))
    )


def test_bad_arguments(bnn_and_guide):
    bnn, guide = bnn_and_guide
    with pytest.raises(ValueError, match="rate"):
        prune(bnn, guide, 1.0)
    with pytest.raises(ValueError, match="known scopes: global, tensor"):
        prune(bnn, guide, 0.5, "layer")
    with pytest.raises(ValueError, match="AutoSoftplusNormal"):
        prune(bnn, make_guide("delta", bnn), 0.5)

import pytest
import torch

from pyro_bnn.nets import MLP, arch_name, l2_penalty, mlp_forward, param_shapes, parse_arch


def test_parse_arch_round_trip():
    for arch in ("FC-10", "FC-100-100-10", "FC-200-200-10", "FC-1200-1200-10"):
        assert arch_name(parse_arch(arch)) == arch
    for bad in ("FC100", "fc-10", "FC-0-10", ""):
        with pytest.raises(ValueError, match="arch|widths"):
            parse_arch(bad)


def test_mlp_shapes_match_param_shapes():
    net = MLP("FC-200-200-10")
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == param_shapes((200, 200, 10))
    assert net(torch.rand(7, 784)).shape == (7, 10)
    assert torch.count_nonzero(net.layers[0].bias) == 0  # Keras-style zero bias


def test_forward_with_sample_dims_equals_a_loop():
    torch.manual_seed(0)
    nets = [MLP((20, 10)) for _ in range(4)]
    x = torch.rand(5, 784)
    stacked = [
        (
            torch.stack([n.layers[i].weight for n in nets]),
            torch.stack([n.layers[i].bias for n in nets]),
        )
        for i in range(2)
    ]
    out = mlp_forward(x, stacked)  # (S, N, C)
    assert out.shape == (4, 5, 10)
    for s, net in enumerate(nets):
        torch.testing.assert_close(out[s], net(x))


def test_l2_penalty_by_hand():
    net = MLP((3, 2), in_features=4)
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.arange(12.0).view(3, 4))
        net.layers[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, 3.0]]))
        net.layers[0].bias.fill_(100.0)  # biases are not penalised
    layer0 = sum(i * i for i in range(12)) / 3  # 506 / 3 units
    layer1 = (1 + 4 + 0 + 0.25 + 0.25 + 9) / 2  # 14.5 / 2 units
    assert l2_penalty(net, 0.1).item() == pytest.approx(0.1 * (layer0 + layer1))
    assert l2_penalty(net, 0.0).item() == 0.0
    with pytest.raises(ValueError, match="lam"):
        l2_penalty(net, -1.0)


def test_hidden_dropout_masks_hidden_units_in_training_only():
    torch.manual_seed(0)
    net = MLP((50, 50, 10), dropout=0.5)
    plain = MLP((50, 50, 10))
    plain.load_state_dict(net.state_dict())  # dropout adds no parameters
    x = torch.rand(8, 784)
    torch.testing.assert_close(net.eval()(x), plain(x))  # off in eval mode
    hidden = []
    net.dropout.register_forward_hook(lambda _, __, out: hidden.append(out))
    net.train()(x)
    assert len(hidden) == 2  # after each hidden ReLU, not on the logits
    first = plain.layers[0](x).relu()  # (8, 50) the first hidden layer without dropout
    kept = hidden[0] != 0
    torch.testing.assert_close(hidden[0][kept], 2 * first[kept])  # survivors scaled by 1/(1-p)
    dropped = (~kept & (first > 0)).sum() / (first > 0).sum()
    assert 0.35 < dropped < 0.65  # about half the live units dropped
    assert MLP("FC-10", dropout=0.3).dropout is not None and MLP("FC-10").dropout is None
    with pytest.raises(ValueError, match="dropout"):
        MLP("FC-10", dropout=1.0)

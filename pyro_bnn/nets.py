"""The one MLP definition shared by the plain baselines and the Bayesian net, and the L2
penalty of eq. 6 (Section 3.3).

Parameters are named like ``nn.Linear`` layers in an ``nn.ModuleList`` called ``layers``:
``layers.0.weight`` (out, in), ``layers.0.bias`` (out,), ... so a flat weight vector of the
Bayesian net unflattens into a state dict that :class:`MLP` loads directly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "mlp_forward", "param_shapes", "parse_arch", "arch_name", "l2_penalty"]

IN_FEATURES = 784


def parse_arch(arch: str | Sequence[int]) -> tuple[int, ...]:
    """'FC-100-100-10' -> (100, 100, 10); a sequence of widths passes through, checked.

    :param arch: an arch name 'FC-<width>-...-<classes>' or a sequence of layer widths.

    >>> parse_arch("FC-100-100-10")  # (100, 100, 10)
    """
    if isinstance(arch, str):
        if not re.fullmatch(r"FC(-\d+)+", arch):
            raise ValueError(f"arch must look like 'FC-100-100-10', got {arch!r}")
        widths = tuple(int(w) for w in arch.split("-")[1:])
    else:
        widths = tuple(int(w) for w in arch)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive integers, got {arch!r}")
    return widths


def arch_name(widths: Sequence[int]) -> str:
    """(100, 100, 10) -> 'FC-100-100-10'.

    :param widths: layer widths, the output layer last.

    >>> arch_name((200, 200, 10))  # 'FC-200-200-10'
    """
    return "FC-" + "-".join(str(w) for w in widths)


def param_shapes(widths: Sequence[int], in_features: int = IN_FEATURES) -> dict[str, tuple]:
    """Ordered parameter shapes: {'layers.0.weight': (w0, in), 'layers.0.bias': (w0,), ...}.

    :param widths: layer widths or an arch name.
    :param in_features: input dimension (784 for MNIST).

    >>> param_shapes((10,))  # {'layers.0.weight': (10, 784), 'layers.0.bias': (10,)}
    """
    shapes: dict[str, tuple] = {}
    fan_in = in_features
    for i, width in enumerate(parse_arch(widths)):
        shapes[f"layers.{i}.weight"] = (width, fan_in)
        shapes[f"layers.{i}.bias"] = (width,)
        fan_in = width
    return shapes


def mlp_forward(
    x: torch.Tensor, params: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """ReLU MLP with a linear output layer; returns logits (..., N, C).

    :param x: inputs (..., N, D), e.g. (N, 784) on the /126 pixel scale.
    :param params: one (weight, bias) per layer, (..., out, in) and (..., out); leading
        sample dims on the weights broadcast against those of x, so S weight samples give
        (S, N, C).

    >>> logits = mlp_forward(x, [(layer.weight, layer.bias) for layer in MLP((100, 10)).layers])
    """
    h = x
    last = len(params) - 1
    for i, (weight, bias) in enumerate(params):
        if weight.dim() == 2:
            h = F.linear(h, weight, bias)
        elif h.dim() == 2 and weight.dim() == 3:  # one input, S weight samples: one GEMM
            s, out, _ = weight.shape
            h = F.linear(h, weight.reshape(s * out, -1), bias.reshape(s * out))
            h = h.view(len(h), s, out).transpose(0, 1)  # (S, N, out)
        elif h.dim() == 3 and weight.dim() == 3:
            h = torch.baddbmm(bias.unsqueeze(-2), h, weight.transpose(-1, -2))
        else:
            h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        if i < last:
            h = h.relu_()
    return h


class MLP(nn.Module):
    """Plain fully connected ReLU net, e.g. ``MLP((100, 100, 10))`` is FC-100-100-10.

    Initialised like the authors' Keras Dense layers: Glorot-uniform weights, zero biases.
    forward: x (N, 784) -> logits (N, C).

    :param widths: layer widths, the output layer last, or an arch name.
    :param in_features: input dimension (784 for MNIST).
    :param dropout: the rate of a dropout layer after every hidden ReLU (0: none), as MC
        dropout samples it (:func:`~pyro_bnn.predict.dropout_sampler`); dropout on the
        input is an ``nn.Dropout`` before the net.

    >>> net = MLP("FC-200-200-10")
    >>> logits = net(data.test.x)  # (10000, 10)
    """

    def __init__(
        self, widths: Sequence[int] | str, in_features: int = IN_FEATURES, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.widths = parse_arch(widths)
        self.in_features = in_features
        dims = (in_features, *self.widths)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (the Keras init), drawn from torch's RNG;
        a Bayesian MLP's guide starts from a fresh draw of it unless the prior is the paper's."""
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def arch(self) -> str:
        return arch_name(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is None:
            return mlp_forward(x, [(layer.weight, layer.bias) for layer in self.layers])
        h = x
        for layer in self.layers[:-1]:
            h = self.dropout(layer(h).relu())
        return self.layers[-1](h)


def l2_penalty(model: MLP, lam: float) -> torch.Tensor:
    """The L2 term of the paper's eq. 6 (Section 3.3): ``lam * sum_l (1/|l|) * sum_{w in l} w**2``.

    ``|l|`` is the number of units of layer l (its output width, ``out_features``) and w runs
    over that layer's weight matrix only; biases are not penalised (Szegedy et al.'s
    "weight decay lambda * sum w^2 / k, k the number of units in the layer").

    :param model: the :class:`MLP`.
    :param lam: lambda >= 0 (the paper uses 0, 1e-4, 1e-2, 1).

    >>> loss = F.cross_entropy(net(x), y) + l2_penalty(net, 1e-4)
    """
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    total = torch.zeros((), device=model.layers[0].weight.device)
    for layer in model.layers:
        total = total + layer.weight.square().sum() / layer.out_features
    return lam * total

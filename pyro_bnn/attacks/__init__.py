"""Adversarial attacks on decision rules, one module per family.

A *model function* ``fn`` maps x (N, 784) on the /126 pixel scale to logits or
probabilities (N, C), as ``output="logits"|"probs"`` says, or to (K, N, C): K independent
draws of a stochastic decision rule. With a leading K the loss is computed per draw and
averaged over K (expectation over transformation, EOT), so its gradient is the mean of the
per-draw gradients, and x + r counts as misclassified when more than ``confidence`` (by
default half) of the K draws get it wrong.

- :mod:`~pyro_bnn.attacks.min_norm`: the rigorous minimum-norm attack (DDN, eq. 5);
- :mod:`~pyro_bnn.attacks.paper`: the authors' variant of it;
- :mod:`~pyro_bnn.attacks.eot`: the minimum-norm attack white box on a stochastic model;
- :mod:`~pyro_bnn.attacks.pgd`: fixed-budget PGD, and PGD for adversarial training;
- :mod:`~pyro_bnn.attacks.apgd`: APGD from torchattacks; not imported here, so that
  ``import pyro_bnn`` does not load torchattacks;
- :mod:`~pyro_bnn.attacks.base`: model functions, results and shared checks.

``runs/study/attack_sets.py`` stores results as artifacts.

>>> result = min_norm_attack(net, data.test.x, data.test.y, steps=100)
>>> result.distortion()["distortion"]
"""

from .base import OUTPUTS, AttackResult, ModelFn, SampleFn, distortion, loss_grad, perturb
from .eot import eot_attack, eot_model, miss_rate
from .min_norm import min_norm_attack
from .paper import live_targets, paper_attack
from .pgd import LOSSES, PGDAdversary, PGDResult, pgd_attack, robust_accuracy

__all__ = [
    "LOSSES",
    "OUTPUTS",
    "AttackResult",
    "PGDAdversary",
    "ModelFn",
    "PGDResult",
    "SampleFn",
    "distortion",
    "eot_attack",
    "eot_model",
    "live_targets",
    "loss_grad",
    "min_norm_attack",
    "miss_rate",
    "paper_attack",
    "perturb",
    "pgd_attack",
    "robust_accuracy",
]

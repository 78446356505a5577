"""The study's two protocols, 'paper' (the authors' choices) and 'rigorous': how each
scores transfer (:data:`PROTOCOL_RULES`) and how it attacks a source net
(:func:`source_attack_set`, the one place the pipeline's source attack sets are made,
whether in the training worker that just trained the net or later in the main process).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyro_bnn.data import MNIST

from .attack_sets import attack_set
from .profiles import Profile
from .sources import Source

__all__ = ["PROTOCOL_RULES", "source_attack_set"]

PROTOCOL_RULES = {  # split attacked, multiplier for BNNs / plain nets, failures kept,
    # x + m r clipped to the pixel box (the authors' code does not clip)
    "paper": {
        "split": "val", "bnn_mult": 1.5, "plain_mult": 3.0, "keep_failures": False, "clip": False
    },
    "rigorous": {
        "split": "test", "bnn_mult": 1.0, "plain_mult": 1.0, "keep_failures": True, "clip": True
    },
}  # fmt: skip


def source_attack_set(
    src: Source,
    protocol: str,
    profile: Profile,
    data: MNIST,
    root: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """The attack set of one source net under ``protocol`` with ``profile``'s budget, on
    ``device`` (:func:`runs.study.attack_sets.attack_set`: built, or reused)."""
    paper = protocol == "paper"
    return attack_set(
        src.name,
        src.net,
        data,
        protocol=protocol,
        split=PROTOCOL_RULES[protocol]["split"],
        limit=profile.paper_examples if paper else profile.attack_examples,
        root=root,
        fingerprint=src.fingerprint,
        device=device,
        progress=progress,
        log=log,
        steps=profile.paper_steps if paper else profile.attack_steps,
        **({} if paper else {"n_targets": profile.attack_targets}),
    )

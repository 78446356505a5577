"""What the study's commands share: one-line argument errors, checked values, and the
wall time printed at the end."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

__all__ = [
    "Parser",
    "add_attack_targets",
    "device",
    "exit_timed",
    "started",
    "non_negative_int",
    "positive_float",
    "probability_clip",
    "positive_int",
]


def exit_timed(main: Callable[[], int]) -> None:
    """Run a script's ``main``, print 'done in N s', and exit with its return code."""
    start = time.perf_counter()
    code = main()
    print(f"done in {time.perf_counter() - start:.0f} s")
    sys.exit(code)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of usage + message."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(text: str, low: int, what: str) -> int:
    """``text`` as an integer >= low, else an argparse error saying it must be ``what``."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (so ``--limit 0`` is an error, not 'all')."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0, e.g. a count of extra attack passes."""
    return _int_at_least(text, 0, "a non-negative integer")


def add_attack_targets(p: argparse.ArgumentParser) -> None:
    """The --attack-targets option, for :func:`runs.study.profiles.get_profile`."""
    p.add_argument(
        "--attack-targets",
        type=non_negative_int,
        default=None,
        help="passes of the rigorous attack targeted at the nearest classes, beside the "
        "untargeted one (default: the profile's; 2 removes the attack's tail)",
    )


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0, e.g. an attack budget."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def probability_clip(text: str) -> float:
    """An argparse type: a clip of the target's probability, in [0, 0.5) (0: no clip)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 0.5), got {text!r}")
    return value


def device(text: str) -> str:
    """An argparse type: a torch device that exists on this machine, e.g. cpu or cuda."""
    import torch

    try:
        kind = torch.device(text).type
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu or cuda") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r}: CUDA is not available on this machine; use --device cpu"
        )
    if kind not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu or cuda")
    return text


def started(args: argparse.Namespace, prog: str, argv: list[str] | None) -> str:
    """Apply ``--threads`` where given, and return the command line that made this run,
    e.g. 'python runs/attack_budget.py --n 100', for the footers of its results."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return f"python {prog} " + " ".join(sys.argv[1:] if argv is None else argv)

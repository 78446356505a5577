"""Atomic, resumable artifacts: a tensor file plus ``meta.json`` in one folder.

Layout: ``<root>/<kind>/<name>/tensors.pt`` and ``meta.json``. ``meta.json`` is written
last, so its presence marks a finished artifact; a rerun whose config matches reuses it.
Every file goes to a temporary name first and is then renamed, so a kill never leaves a
half-written file under the real name. A file that cannot be read back (truncated or
corrupt) raises a :class:`~pyro_bnn.data.DataError` naming it and the fix.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .data import DataError

__all__ = [
    "DEFAULT_ROOT",
    "artifact_dir",
    "atomic_write",
    "cached",
    "library_versions",
    "load_artifact",
    "load_bnn",
    "load_checkpoint",
    "matching_meta",
    "save_artifact",
    "save_bnn",
    "save_checkpoint",
]

DEFAULT_ROOT = Path("runs") / "artifacts"  # where the study's artifacts go by default
TENSORS, META = "tensors.pt", "meta.json"


def artifact_dir(root: str | os.PathLike, kind: str, name: str) -> Path:
    """``<root>/<kind>/<name>``; names may not contain path separators.

    :param root: the artifacts root, e.g. :data:`DEFAULT_ROOT`.
    :param kind: the artifact kind, a folder per kind (e.g. 'bnn').
    :param name: the artifact's name, a plain file name.

    >>> artifact_dir("runs/artifacts", "bnn", "rho-3")  # Path('runs/artifacts/bnn/rho-3')
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"artifact name must be a plain file name, got {name!r}")
    return Path(root) / kind / name


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary sibling of ``path``, then rename it over.

    :param path: the file to write; its folder is created.
    :param write: writes the content to the temporary path it is given.

    >>> atomic_write("out/table.md", lambda tmp: tmp.write_text(text))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; give it a normal file's mode
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _torch_load(path: Path, fix: str, weights_only: bool = True) -> Any:
    """``torch.load`` onto the CPU; any failure is a DataError naming the file and ``fix``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # a damaged file fails with many error types
        reason = str(err).partition("\n")[0].partition(". ")[0]  # torch's first sentence
        raise DataError(f"cannot load {path} ({type(err).__name__}: {reason}); {fix}") from err


def _normalise(obj: Any) -> Any:
    """JSON round trip, so configs compare equal whatever their Python types."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def library_versions() -> dict[str, str]:
    """Python, torch, Pyro and numpy versions and the machine, as stored in ``meta.json``.

    >>> library_versions()["torch"]
    """
    import numpy
    import pyro

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": numpy.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
    }


def save_artifact(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    config: Mapping[str, Any],
    **meta: Any,
) -> dict:
    """Write ``tensors.pt`` then ``meta.json`` (config, versions, any extra metadata).

    :param path: the artifact's folder.
    :param tensors: what goes into ``tensors.pt`` (tensors, numbers, lists, dicts).
    :param config: what identifies the artifact (JSON-able).
    :param meta: extra JSON-able metadata for ``meta.json``.
    :returns: the meta record written.

    >>> save_artifact("runs/artifacts/attacks/fc10", {"r": r}, {"steps": 100})
    """
    path = Path(path)
    atomic_write(path / TENSORS, lambda tmp: torch.save(dict(tensors), tmp))
    record = {
        "config": _normalise(dict(config)),
        "versions": library_versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_normalise(meta),
    }
    text = json.dumps(record, indent=2, sort_keys=True)
    atomic_write(path / META, lambda tmp: tmp.write_text(text + "\n"))
    return record


def matching_meta(path: str | os.PathLike, config: Mapping[str, Any]) -> dict | None:
    """The meta of a finished artifact at ``path`` whose config equals ``config``, else None.

    :param path: the artifact's folder.
    :param config: the config it must have been saved under.

    >>> matching_meta("runs/artifacts/attacks/fc10", {"steps": 100}) is not None
    """
    path = Path(path)
    if not (path / META).is_file() or not (path / TENSORS).is_file():
        return None
    try:
        meta = json.loads((path / META).read_text())
    except json.JSONDecodeError:
        return None
    return meta if meta.get("config") == _normalise(dict(config)) else None


def load_artifact(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, meta) of a finished artifact; tensors are loaded with ``weights_only=True``.

    :param path: the artifact's folder.

    >>> tensors, meta = load_artifact("runs/artifacts/attacks/fc10")
    """
    path = Path(path)
    if not (path / META).is_file():
        raise FileNotFoundError(f"no finished artifact at {path} (missing {META})")
    fix = f"the artifact is truncated or corrupt: delete {path} to compute it again"
    try:
        meta = json.loads((path / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path / META} ({err}); {fix}") from err
    return _torch_load(path / TENSORS, fix), meta


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The settings where two normalised configs differ, as 'key: old -> new' lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted(set(old) | set(new), key=str)
            for line in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix[:-1] or 'config'}: {old!r} -> {new!r}"]


def cached(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    compute: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """Load the artifact at ``path`` if its config matches; else ``compute()`` and save it.

    A finished artifact made under another config is never overwritten: that raises a
    ValueError naming each setting that differs (saved -> asked).

    :param path: the artifact's folder.
    :param config: what identifies the artifact (JSON-able); stored in meta.json.
    :param compute: returns ``(tensors, extra_meta)``; called only when nothing matches.
    :param log: called with one line, ``reused <path> (saved <time>)`` or
        ``saved <path> (<seconds> s)``, e.g. ``print``.
    :returns: ``(tensors, meta)``.

    >>> tensors, meta = cached(path, {"steps": 10}, lambda: ({"r": r}, {}), log=print)
    """
    path = Path(path)
    meta = matching_meta(path, config)
    if meta is not None:
        if log is not None:
            log(f"reused {path} (saved {meta['saved_at']})")
        return load_artifact(path)
    if (path / META).is_file():
        try:
            saved = json.loads((path / META).read_text()).get("config")
        except json.JSONDecodeError:
            saved = None
        changed = _differences(saved, _normalise(dict(config))) if saved is not None else []
        if changed:
            raise ValueError(
                f"{path} holds a finished artifact made with other settings "
                f"({'; '.join(changed)}); it is kept: delete that folder to redo it, or "
                "use another root"
            )
    start = time.perf_counter()
    tensors, extra = compute()
    extra = {"wall_time_s": round(time.perf_counter() - start, 2), **dict(extra)}
    meta = save_artifact(path, tensors, config, **extra)
    if log is not None:
        log(f"saved {path} ({meta['wall_time_s']:g} s)")
    return dict(tensors), meta


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically write a training checkpoint (plain tensors, numbers, lists and dicts).

    :param path: the checkpoint file.
    :param state: what to save.

    >>> save_checkpoint("ckpt.pt", {"epoch": 3, "model": net.state_dict()})
    """
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | os.PathLike) -> dict | None:
    """The checkpoint at ``path``, or None if there is none.

    :param path: the checkpoint file.

    >>> state = load_checkpoint("ckpt.pt")
    """
    path = Path(path)
    if not path.is_file():
        return None
    return _torch_load(path, "the checkpoint is truncated or corrupt: delete it to start afresh")


BNN_FILE = "bnn.pt"


def save_bnn(path: str | os.PathLike, model, guide, **meta: Any) -> dict:
    """Save a fitted BNN in one folder: the model (net, prior, likelihood), how its guide
    was built, and the guide's parameters; plus ``meta.json``. No data tensor is saved.

    The model is pickled (``torch.save``): its net's class must be importable where it is
    loaded, so a class defined in ``__main__`` (a script or notebook) warns. A prior that
    cannot be pickled (a lambda or a locally defined class inside a distribution) raises a
    ValueError saying what to use instead.

    :param path: the folder to write (atomically, file by file).
    :param model: a :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide, from :func:`~pyro_bnn.guides.make_guide` or an
        autoguide class that takes the model alone.
    :param meta: anything JSON-able to keep beside it (e.g. the fit's summary).

    >>> save_bnn("runs/artifacts/my-bnn", bnn, guide, epochs=20)
    >>> bnn, guide = load_bnn("runs/artifacts/my-bnn")
    """
    import pickle

    from .bnn import BNN, init_guide

    if not isinstance(model, BNN):
        raise ValueError(f"model must be a pyro_bnn BNN, got {type(model).__name__}")
    in_main = sorted(
        {type(m).__name__ for m in model.modules() if type(m).__module__ == "__main__"}
    )
    if in_main:
        warnings.warn(
            f"class {', '.join(in_main)} is defined in __main__: the saved BNN loads only in a "
            "script that defines the same class; define it in an importable module instead",
            UserWarning,
            stacklevel=2,
        )
    init_guide(model, guide)
    recipe = getattr(guide, "recipe", None) or (type(guide), {})
    state = {k: v.detach().cpu() for k, v in guide.state_dict().items()}
    blob = {"model": copy.deepcopy(model).cpu(), "guide": recipe, "state": state}
    path = Path(path)
    try:
        atomic_write(path / BNN_FILE, lambda tmp: torch.save(blob, tmp))
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # leave nothing behind
        raise ValueError(
            f"this BNN cannot be saved: {err}. A prior given as a lambda, or a distribution "
            "defined inside a function, cannot be pickled: use a module-level function or "
            "class, a mapping of names to distributions, or save the guide's state_dict() "
            "and rebuild the model in code"
        ) from None
    record = {"versions": library_versions(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    record |= _normalise(meta)
    atomic_write(path / META, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return record


def load_bnn(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a BNN saved by :func:`save_bnn`: returns ``(model, guide)`` on ``device``.

    Unpickles the saved model: load only folders you trust.

    :param path: the folder :func:`save_bnn` wrote.
    :param device: where to put the model and guide.

    >>> bnn, guide = load_bnn("runs/artifacts/my-bnn", device="cuda")
    """
    from .bnn import init_guide
    from .guides import make_guide

    path = Path(path)
    if not (path / BNN_FILE).is_file():
        raise FileNotFoundError(f"no saved BNN at {path} (missing {BNN_FILE})")
    blob = _torch_load(
        path / BNN_FILE,
        "the file is truncated or corrupt, or a class it holds is not importable here: "
        "save the BNN again, with its classes defined in an importable module",
        weights_only=False,
    )
    model = blob["model"]
    spec, kwargs = blob["guide"]
    guide = make_guide(spec, model, **kwargs)
    init_guide(model, guide)
    try:
        guide.load_state_dict(blob["state"])
    except RuntimeError as err:
        raise ValueError(
            f"the saved guide's parameters do not fit a {type(guide).__name__} rebuilt from "
            f"{spec!r}: {err}; build guides with make_guide so their settings are recorded"
        ) from None
    return model.to(device), guide.to(device)

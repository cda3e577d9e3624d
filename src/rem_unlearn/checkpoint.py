"""Safe checkpoints (safetensors + a JSON sidecar) and the cache key of a trained model."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import UserError
from .files import atomic_path, json_text, read_json_object

CHECKPOINT_FORMAT = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


def versions() -> dict[str, str]:
    from . import __version__

    return {"rem_unlearn": __version__, "torch": torch.__version__, "python": platform.python_version()}


@functools.lru_cache(maxsize=1)
def source_commit() -> str:
    """The git commit of this package's source tree, ``-dirty`` when the checkout has changes.

    ``REM_UNLEARN_COMMIT`` names it where the source is a copy without
    ``.git`` (a tree synced to a cluster); an installed wheel, or a package
    that git does not track, is ``"unknown"``.
    """
    if os.environ.get("REM_UNLEARN_COMMIT"):
        return os.environ["REM_UNLEARN_COMMIT"]
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # A package installed (not editable) inside another repository is not that repository's code.
    if git("ls-files", "--error-unmatch", Path(__file__).name) is None:
        return "unknown"
    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("-dirty" if git("status", "--porcelain") else "")


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hash of every input that changes an artefact (configs, seeds, format version)."""
    blob = json.dumps({"format": CHECKPOINT_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Weights to ``path`` (safetensors), ``meta`` plus architecture and versions to the sidecar.

    Both go through unique temporary files.  A stale sidecar is removed before
    the weights are replaced and the new one is moved in last, so a sidecar
    never describes other weights and a checkpoint without one is incomplete.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    full = {"format": CHECKPOINT_FORMAT, "class": type(model).__name__, "arch": getattr(model, "arch", None),
            "versions": versions(), **meta}
    side = sidecar_path(path)
    with atomic_path(side) as side_tmp:
        side_tmp.write_text(json_text(full), encoding="utf-8")
        with atomic_path(path) as weights_tmp:
            save_file(state, str(weights_tmp))
            side.unlink(missing_ok=True)
    return path


def is_complete(path: str | Path) -> bool:
    """Weights and sidecar are both there (the sidecar is written last)."""
    return Path(path).is_file() and sidecar_path(Path(path)).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(Path(path))
    if not side.is_file():
        raise CheckpointError(f"{path}: sidecar {side.name} is missing (incomplete or foreign checkpoint)")
    return read_json_object(side, CheckpointError, "checkpoint sidecar")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0][:200] if lines else "") or type(exc).__name__


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from safetensors, or from ``.pt``/``.pth`` with ``torch.load(weights_only=True)``.

    Whatever the file holds, the result is tensors only or a :class:`CheckpointError`:
    a pickle that would run code is refused by the weights-only unpickler.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" if not path.exists() else f"{path}: not a file")
    if path.suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():  # e.g. about the pickle protocol: the outcome is all that matters
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(f"{path}: refused, its pickle holds code or objects other than tensors "
                                  "(only weights are read); save model.state_dict() instead") from exc
        except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:  # torch.load's ways to fail
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, truncated or not written by "
                                  f"torch.save ({_first_line(exc)})") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: not a state_dict (expected a mapping of names to tensors, "
                              f"got {type(state).__name__})")
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights into ``model``; any key or shape mismatch is a clear error, nothing is half-loaded."""
    state = read_state(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(filter(None, [
            f"missing {missing[:4]}" if missing else "", f"unexpected {unexpected[:4]}" if unexpected else "",
            f"shape mismatch {wrong[:3]}" if wrong else ""]))
        raise CheckpointError(f"{path} does not fit {type(model).__name__} "
                              f"({getattr(model, 'arch', '')}): {detail}")
    model.load_state_dict(state)
    return model

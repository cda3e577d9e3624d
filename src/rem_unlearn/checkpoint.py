"""Safe checkpoints (safetensors + a JSON sidecar) and the cache key of a trained model."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


def versions() -> dict[str, str]:
    from . import __version__

    return {"rem_unlearn": __version__, "torch": torch.__version__, "python": platform.python_version()}


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hash of every input that changes an artefact (configs, seeds, format version)."""
    blob = json.dumps({"format": CHECKPOINT_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Weights to ``path`` (safetensors), ``meta`` plus architecture and versions to the sidecar.

    The sidecar is written last, so a checkpoint without a sidecar is incomplete.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    full = {"format": CHECKPOINT_FORMAT, "class": type(model).__name__, "arch": getattr(model, "arch", None),
            "versions": versions(), **meta}
    atomic_write_json(sidecar_path(path), full)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(Path(path))
    if not side.exists():
        raise CheckpointError(f"{path}: sidecar {side.name} is missing (incomplete or foreign checkpoint)")
    return json.loads(side.read_text())


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights into ``model``; any key or shape mismatch is a clear error, nothing is half-loaded."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    else:
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
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

"""Sample ids (and labels) from a user: whole numbers or one clear error, never a silent truncation.

:func:`read_ids` is the one reader of an ids file (the CLI's ``--forget-ids``);
:func:`as_integers` is the one check of integer arrays, shared by the forget
ids of the Python API and the ``ids``/``labels`` of a user's ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import UserError

INT64 = np.iinfo(np.int64)


class ForgetIdError(UserError, ValueError):
    """Forget ids that cannot be used; raised before any work is done."""


def as_integers(values, what: str, error: type[UserError] = ForgetIdError) -> torch.Tensor:
    """``values`` as a flat int64 tensor.

    Integers pass; floats only when every value is a finite whole number
    (``3.0``); booleans, strings, objects, NaN, fractions and values outside
    int64 are refused with ``error``.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as exc:  # ragged nesting, unconvertible objects
        raise error(f"{what} must be an array of integers ({exc})") from None
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise error(f"{what} must be integers, got {'booleans' if kind == 'b' else f'dtype {arr.dtype}'}")
    if kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise error(f"{what} must be integers, got {arr[bad].flat[0]}")
        fractional = arr != np.round(arr)
        if fractional.any():
            raise error(f"{what} must be integers, got {arr[fractional].flat[0].item()!r} (not a whole number)")
        with np.errstate(over="ignore"):  # compared in float64: 2**63 overflows a float16
            wide = arr.astype(np.float64)
        if arr.size and (wide.max() >= 2.0**63 or wide.min() < -(2.0**63)):
            raise error(f"{what}: values beyond the 64-bit integer range")
    if kind == "u" and arr.size and arr.max() > INT64.max:
        raise error(f"{what}: values beyond the 64-bit integer range")
    return torch.from_numpy(arr.astype(np.int64).reshape(-1))


def read_ids(path: str | Path) -> torch.Tensor:
    """Sample ids from a ``.npy`` array, or a ``.txt``/``.csv`` file (ids separated by spaces, commas or
    newlines; ``#`` comments; a header on the first line is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ForgetIdError(f"forget-ids file {path}: {'not a file' if path.exists() else 'not found'}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ForgetIdError(f"{path}: not a readable .npy array ({exc})") from exc
        if not isinstance(arr, np.ndarray):
            arr.close()
            raise ForgetIdError(f"{path}: a .npz archive, not a .npy array; save the ids with numpy.save")
        return as_integers(arr, f"{path}: ids")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ForgetIdError(f"{path}: not a text file; give ids as text (.txt/.csv) or as a .npy array") from None
    ids: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                value = int(token)
            except ValueError:
                if number == 1 and not ids:
                    break  # a CSV header such as "id"
                raise ForgetIdError(f"{path}:{number}: {token[:40]!r} is not an integer sample id") from None
            if not INT64.min <= value <= INT64.max:
                raise ForgetIdError(f"{path}:{number}: {token[:40]} is beyond the 64-bit integer range")
            ids.append(value)
    return torch.tensor(ids, dtype=torch.long)

"""A user's model from ``module:factory`` plus a checkpoint, for ``rem-unlearn unlearn --model``.

``module`` is an importable module (``mypkg.nets``) or a ``.py`` file
(``path/to/nets.py``); ``factory`` is a callable in it that returns the
untrained ``nn.Module`` (a class or a function), called with the keyword
arguments given.  The checkpoint is a state_dict (safetensors, or
``.pt``/``.pth`` read with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import UserError


class ModelFactoryError(UserError, ValueError):
    """``module:factory`` does not name a callable that builds an ``nn.Module``."""


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelFactoryError(f"--model {spec!r}: expected module:factory, e.g. mypkg.nets:make_net "
                                "or path/to/nets.py:Net")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.exists():
            raise ModelFactoryError(f"--model {spec!r}: file {path} not found")
        name = f"_rem_user_model_{abs(hash(str(path.resolve())))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:  # the user's own code: its error is theirs to fix (--debug shows the trace)
            sys.modules.pop(name, None)
            raise ModelFactoryError(f"--model {spec!r}: running {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")  # the current folder, as `python -m` would
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelFactoryError(f"--model {spec!r}: cannot import {module_name} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelFactoryError(f"--model {spec!r}: {module_name} has no callable {attr!r}; "
                                f"callables there: {', '.join(public[:12]) or 'none'}")
    return factory


def build_user_model(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    factory = resolve_factory(spec)
    try:
        model = factory(**(kwargs or {}))
    except Exception as exc:  # the user's factory, e.g. called with a keyword it does not take
        raise ModelFactoryError(f"--model {spec!r} with --model-kwargs {kwargs or {}}: "
                                f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelFactoryError(f"--model {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def input_channels(model: nn.Module) -> int | None:
    """The number of image channels ``model`` takes, where it says: a ``num_channels`` attribute (Hugging Face
    models), else its first convolution's ``in_channels``; None for a model that does not start with one."""
    channels = getattr(model, "num_channels", None)
    if isinstance(channels, int):
        return channels
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    return first.in_channels if isinstance(first, nn.Conv2d) else None

"""Typed, validated configuration: dataclasses loaded from TOML/YAML plus dotted overrides.

Every knob lives in one of these dataclasses (never in module constants) and
is saved with every checkpoint and benchmark record.  A typo anywhere gives an
error naming the valid keys or choices.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import UserError

DATASET_NAMES = ("fashion-mnist", "cifar10", "svhn")
CORRUPTION_KINDS = ("random", "interclass", "poison")
ARCHS = ("resnet9", "vit", "resnet18", "smallcnn", "resnet9-plain")
VARIANTS = ("capacity", "etd")


class ConfigError(UserError, ValueError):
    """A configuration value or key that is not valid."""


def _choice(value: Any, choices: tuple, what: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    root: str | None = None  # folder with the dataset files (torchvision layout works)
    download: bool | None = None  # None: the loader's default (Fashion-MNIST downloads, others do not)
    train_size: int | None = None  # seeded subset of the training split; None = all
    test_size: int | None = None  # seeded subset of the test split, for quick runs; None = all
    subset_seed: int = 0
    # What the metrics are measured on: "test", or "validation", images of the training split outside the
    # training subset (the test split is then never read: tuning uses it).
    evaluate_on: str = "test"
    validation_size: int = 5000

    def validate(self) -> None:
        _choice(self.name, DATASET_NAMES, "data.name")
        _choice(self.evaluate_on, ("test", "validation"), "data.evaluate_on")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.evaluate_on == "validation" and self.test_size is not None:
            raise ConfigError("data.test_size subsets the test split, which data.evaluate_on=validation never reads; "
                              "set data.validation_size instead")
        if self.evaluate_on == "validation" and (self.train_size is None or self.validation_size <= 0):
            raise ConfigError("data.evaluate_on=validation needs data.train_size (the validation images are the "
                              "training split's other images) and a positive data.validation_size")


@dataclass
class CorruptionConfig:
    kind: str = "poison"
    size: float = 1000  # a count (>= 1) or a fraction of the training set (< 1)
    seed: int = 0
    class_pair: tuple[int, int] | None = None  # interclass; None = the dataset's default pair
    target_class: int = 0  # poison
    patch_size: int = 3  # poison

    def validate(self) -> None:
        _choice(self.kind, CORRUPTION_KINDS, "corruption.kind")
        if self.size <= 0:
            raise ConfigError(f"corruption.size must be > 0 (a count or a fraction), got {self.size}")
        if self.patch_size <= 0:
            raise ConfigError("corruption.patch_size must be positive")


#: The paper's keep-probability of a memorisation unit: ETD pre-training and REM's redirection capacity.
P_MEM = 0.2


@dataclass
class ModelConfig:
    arch: str = "resnet9"
    width: float = 0.5  # channel multiplier of the ResNet-9 (1.0 = the paper's 2.28M parameters)
    variant: str = "capacity"  # "capacity": p_mem 0 in pre-training; "etd": P_MEM
    p_fixed: float = 0.5
    mask_seed: int = 0
    # ViT only
    patch: int = 8
    dim: int = 512
    depth: int = 4
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1536
    partition: str = "token"

    @property
    def p_mem(self) -> float:
        return P_MEM if self.variant == "etd" else 0.0

    def validate(self) -> None:
        _choice(self.arch, ARCHS, "model.arch")
        _choice(self.variant, VARIANTS, "model.variant")
        _choice(self.partition, ("token", "feature", "mlp"), "model.partition")
        if not 0.0 < self.p_fixed <= 1.0:
            raise ConfigError(f"model.p_fixed must be in (0, 1], got {self.p_fixed}")
        if self.width <= 0:
            raise ConfigError("model.width must be positive")


@dataclass
class OptimConfig:
    """Optimiser and schedule; shared by pre-training and every unlearning method."""

    optimizer: str = "sgd"
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "warmup-linear"  # or "constant"
    warmup_fraction: float = 0.01
    decay_horizon: float = 1.25  # linear decay reaches 0 at horizon x steps (ends near 0.21 x peak)
    batch_size: int = 512

    def validate(self) -> None:
        _choice(self.optimizer, ("sgd", "adam"), "optimizer")
        _choice(self.schedule, ("warmup-linear", "constant"), "schedule")
        if self.lr <= 0 or self.batch_size <= 0:
            raise ConfigError("lr and batch_size must be positive")


@dataclass
class TrainConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 20
    augment: bool = True
    crop_padding: int = 2
    label_smoothing: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        self.optim.validate()
        if self.epochs <= 0:
            raise ConfigError("train.epochs must be positive")


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast where the hardware has bf16, else fp32) | bf16 | fp16 | fp32
    channels_last: bool = True
    threads: int | None = None
    cache_dir: str = "~/.cache/rem_unlearn"
    progress: bool = True

    def validate(self) -> None:
        _choice(self.device, ("auto", "cpu", "cuda"), "runtime.device")
        _choice(self.precision, ("auto", "bf16", "fp16", "fp32"), "runtime.precision")


@dataclass
class ExperimentConfig:
    """What it takes to produce one trained, corrupted model."""

    data: DataConfig = field(default_factory=DataConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # The unlearning optimiser that goes with this recipe (e.g. Adam for the ViT); every method uses it
    # instead of its own default (``experiment.method_overrides``).  None: each method's own default.
    unlearn_optim: OptimConfig | None = None

    def validate(self) -> "ExperimentConfig":
        validate_tree(self)
        return self


# ----------------------------------------------------------------------------- generic machinery


def validate_tree(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate_tree(value)
    if hasattr(obj, "validate") and type(obj).validate is not ExperimentConfig.validate:
        obj.validate()


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if origin is Literal:
        _choice(value, typing.get_args(tp), where)
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} expects a list, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, where) for v in value)
    if origin is list:
        (inner,) = typing.get_args(tp) or (str,)
        return [_coerce(v, inner, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table/mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table/mapping of {tp.__name__} keys")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where} expects true/false, got {value!r}")
        return bool(value)
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} expects {tp.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors naming the valid ones."""
    hints = _type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; valid keys: {', '.join(names)}")
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        default = _field_default(defaults[k])
        if isinstance(v, dict) and dataclasses.is_dataclass(default):
            v = _merge(to_dict(default), v)  # a partial section keeps the field's own defaults (e.g. a method's optim)
        kwargs[k] = _coerce(v, hints[k], f"{where}.{k}" if where else k)
    return cls(**kwargs)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``cls``'s evaluated annotations: evaluating them is most of the cost of building a config."""
    return typing.get_type_hints(cls)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None if f.default is dataclasses.MISSING else f.default


def to_dict(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float)):  # most of a config: leaves first
        return obj
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings onto a nested mapping (values parsed as TOML scalars when possible)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return data


def read_config_file(path: str | Path) -> dict:
    """A TOML, YAML (.yaml/.yml) or JSON (.json) file holding a mapping; anything else is a clear error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: {'not a file' if path.exists() else 'not found'}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:  # ValueError: TOML and JSON errors
        raise ConfigError(f"config file {path}: cannot be read ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/mapping of sections, got {type(data).__name__}")
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Any:
    """Defaults <- ``base`` <- file <- overrides, then validated."""
    data: dict = json.loads(json.dumps(base or {}))
    if path is not None:
        data = _merge(data, read_config_file(path))
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(cls, data)
    validate_tree(cfg)
    return cfg


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

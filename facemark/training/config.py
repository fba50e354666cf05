"""Training configuration: typed sections read from YAML, overridable from the command line.

A config file holds the sections below; any key can be overridden with ``section.key=value``
(``facemark train cfg.yaml optim.lr=1e-3 data.input_size=128``). Unknown keys and values of
the wrong type raise :class:`~facemark.errors.ConfigError` naming the dotted key and, for
typos, the closest known key. Defaults are the PIPNet paper's recipe
(``pip_32_16_60_r18_l2_l1_10_1_nb10``): ResNet-18, stride 32, 10 neighbours, Adam 1e-4,
x0.1 at epochs 30 and 50, 60 epochs, batch 16, 256 px input.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facemark.data.cache import MAX_CONTEXT
from facemark.data.formats import split_spec
from facemark.data.schemes import get_scheme, is_scheme_file
from facemark.errors import ConfigError
from facemark.io import atomic_write_text


@dataclass
class DataConfig:
    """Where the faces come from and how they are cropped and augmented.

    ``train``/``val``/``test`` are dataset strings for ``open_dataset`` (``FORMAT:PATH`` or a
    path); relative paths are resolved against the config file's folder. When ``val`` is
    empty, ``val_fraction`` of the training faces (a seeded random split) validate.
    ``scheme`` is a registered scheme name or a scheme file (``.yaml``/``.json``, relative
    to the config file; see :mod:`facemark.data.schemes`).
    """

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    val_fraction: float = 0.05
    scheme: str = "300w68"
    crop_rule: str = "300w"
    input_size: int = 256
    context: float = 1.0        # caches hold this many times the crop's side (>= 1), so box
                                # jitter and shifts show real image instead of fill
    cache_dir: str = "cache"
    augment: str = "pipnet"
    augment_args: dict[str, Any] = field(default_factory=dict)  # overrides of the preset
    repeat: list[int] = field(default_factory=list)  # per ``train`` entry: times each of its
                                # training faces is seen per epoch (default 1; validation
                                # faces are split off before repeating, never repeated; 0
                                # keeps a set in the split, so the validation faces stay the
                                # same, but trains on none of its faces)
    flip: list[bool] = field(default_factory=list)  # per ``train`` entry: false turns the
                                # augmentation's horizontal flip off for that set's faces, so
                                # a set whose annotations are not mirror-symmetric keeps its
                                # own offset (default: every set flips as the recipe says)
    smaller_sizes: list[int] = field(default_factory=list)  # crop sides (multiples of the
                                # head's cell, below input_size) that a batch is shrunk to
                                # with probability smaller_p, so the model also predicts on
                                # a smaller first pass (Landmarker first_pass_size); plain
                                # supervised training only
    smaller_p: float = 0.5
    num_workers: int = 2
    skip_bad: bool = False
    blank_images: bool = False  # train on plain black crops (the paper's implicit-prior test)


@dataclass
class ModelConfig:
    """Which model: a registry name plus its constructor arguments (``None`` = the model's default).

    ``init_weights`` starts training from the weights of a trained model of the same
    architecture (a ``.ckpt`` or ``.pt``; fine-tuning), with a fresh optimiser and schedule;
    ``backbone_weights`` loads a torchvision/ImageNet state dict into the backbone only.
    """

    name: str = "pipnet"
    backbone: str = "resnet18"
    net_stride: int | None = 32
    num_nb: int | None = 10
    backbone_weights: str | None = None
    init_weights: str | None = None   # start from a trained model's weights (.ckpt / .pt)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser and schedule; ``schedule`` is ``multistep`` (milestones, gamma) or ``cosine``."""

    optimizer: str = "adam"
    lr: float = 1e-4
    min_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [30, 50])
    gamma: float = 0.1
    epochs: int = 60
    batch_size: int = 16
    warmup_epochs: int = 0  # linear warm-up to lr, then the schedule over the other epochs
    # Exponential moving average of the weights and batch-norm statistics, updated after
    # every optimiser step with this decay (0.999: about the last 1000 steps). Validation,
    # best.ckpt and the finished model use the average; 0 turns it off.
    ema_decay: float = 0.0
    # Batch norm stays in eval mode while training: it normalises with its running
    # statistics and keeps them (mmdetection's norm_eval). For fine-tuning a trained model,
    # e.g. with data.smaller_sizes, whose shrunk batches would otherwise pull the
    # statistics away from those of the model's own input size.
    norm_eval: bool = False


@dataclass
class TrainerConfig:
    """Lightning Trainer settings: devices, nodes, precision, logging, output folder."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = True    # NHWC weights: 1.25x faster CPU training, same numbers
    logger: str = "csv"
    log_every_n_steps: int = 20
    out_dir: str = "runs"
    check_val_every_n_epoch: int = 1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    gradient_clip_val: float | None = None
    # PyTorch's CPU threads for the run (None: its default, one per core). Beside other
    # CPU-bound work, 1 can be much faster (docs/results.md, "CPU training speed").
    threads: int | None = None


@dataclass
class DANNConfig:
    """Domain-adversarial training (``self_training.method: dann``; Ganin and Lempitsky
    2015, PIPNet Table 7's baseline): a domain classifier on the backbone's pooled features
    behind a gradient reversal layer. :mod:`facemark.training.dann` documents every key."""

    loss_weight: float = 1.0
    max_coeff: float = 1.0
    gamma: float = 10.0
    hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    dropout: float = 0.5
    target_batch_size: int | None = None


@dataclass
class SelfTrainingConfig:
    """Learning from ``data.unlabelled`` (``facemark selftrain``; PIPNet Sec. 3.3, 4.5).

    ``method: stc`` (the default) is self-training with curriculum: round 0 trains on
    ``data.train`` alone; round r >= 1 pseudo-labels every crop of ``data.unlabelled`` with
    round r-1's model and trains on both: labelled crops at the full task, pseudo-labelled
    ones at task level ``curriculum[r-1]`` (number of 2x2 max poolings before the shared
    score layer: [2, 1, 0, 0, 0] is the paper's Task 1, Task 2, then Task 3 three times;
    [0, 0, 0] is standard self-training). Checked and used by
    :mod:`facemark.training.self_training`, which documents every key.

    ``method: dann`` trains once, domain-adversarially, on labelled and unlabelled crops
    (the ``dann`` subsection; :mod:`facemark.training.dann`). Both methods find and crop
    the unlabelled faces with ``boxes`` and ``crop_rule``.
    """

    method: str = "stc"
    curriculum: list[int] = field(default_factory=lambda: [2, 1, 0, 0, 0])
    epochs: int | None = None
    labelled_fraction: float | None = None
    reinit: bool = True
    init_checkpoint: str | None = None
    boxes: str = "dataset"
    crop_rule: Any = None
    pseudo_batch_size: int = 64
    flip_test: bool = False
    dann: DANNConfig = field(default_factory=DANNConfig)


@dataclass
class TemperatureConfig:
    """Attention temperature of SepBN / MixBN layers (``facemark.training.temperature``): tau
    goes from ``start`` to ``end`` over ``epochs`` epochs (paper: 30 -> 1 over 30, linear)."""

    start: float = 30.0
    end: float = 1.0
    epochs: int = 30
    schedule: str = "linear"


@dataclass
class CrossProtocolConfig:
    """Cross-protocol training (SepBN paper, Sec. IV): one backbone, one head per dataset.

    Each entry of ``datasets`` is a mapping with ``scheme`` and ``train`` (optional: ``name``,
    ``val``, ``test``, ``crop_rule``, ``weight``); :mod:`facemark.training.cross_protocol`
    checks and documents every key. Empty: ordinary single-dataset training.
    """

    datasets: list[dict[str, Any]] = field(default_factory=list)
    sampling: str = "proportional"
    loss_weighting: str = "samples"
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    finetune_backbone_lr: float = 1e-7


@dataclass
class TrainConfig:
    """A whole experiment."""

    experiment: str = "pipnet_r18_300w"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    cross_protocol: CrossProtocolConfig = field(default_factory=CrossProtocolConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "optim.optimizer": ("adam", "adamw", "sgd"),
    "optim.schedule": ("multistep", "cosine", "constant"),
    "trainer.logger": ("csv", "tensorboard", "both", "none"),
    "trainer.precision": ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true"),
    "temperature.schedule": ("linear", "exponential", "constant"),
    "cross_protocol.sampling": ("proportional", "uniform"),
    "cross_protocol.loss_weighting": ("samples", "datasets"),
    "self_training.method": ("stc", "dann"),
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` to the field's declared type, or raise ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        try:
            number = float(value) if annotation is float else value
            if annotation is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                number = int(value)
            return number
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} expects {annotation.__name__}, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
        return str(value)
    return value


def _fill(cls, values: dict[str, Any], prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'!r} must be a mapping, "
                          f"got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else \
                f"; known keys: {', '.join(prefix + k for k in fields)}"
            raise ConfigError(f"unknown config key {dotted!r}{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _fill(annotation, value or {}, f"{dotted}.")
            continue
        value = _coerce(value, annotation, dotted)
        choices = _CHOICES.get(dotted)
        if choices and value not in choices:
            raise ConfigError(f"config key {dotted!r}: {value!r} is not one of {', '.join(choices)}")
        kwargs[key] = value
    return cls(**kwargs)


def _check_ranges(cfg: TrainConfig) -> None:
    checks = [
        ("optim.lr", cfg.optim.lr > 0, "must be > 0"),
        ("optim.epochs", cfg.optim.epochs > 0, "must be > 0"),
        ("optim.batch_size", cfg.optim.batch_size > 0, "must be > 0"),
        ("optim.warmup_epochs", cfg.optim.warmup_epochs >= 0, "must be >= 0"),
        ("optim.ema_decay", 0 <= cfg.optim.ema_decay < 1, "must be in [0, 1) (0: no average)"),
        ("data.input_size", cfg.data.input_size >= 32, "must be >= 32 pixels"),
        ("data.val_fraction", 0 <= cfg.data.val_fraction < 1, "must be in [0, 1)"),
        ("data.context", 1 <= cfg.data.context <= MAX_CONTEXT, f"must be in [1, {MAX_CONTEXT:g}]"),
        ("data.num_workers", cfg.data.num_workers >= 0, "must be >= 0"),
        ("trainer.threads", cfg.trainer.threads is None
         or (isinstance(cfg.trainer.threads, int) and cfg.trainer.threads >= 1),
         "must be an integer >= 1 or null (PyTorch's default)"),
        ("data.repeat", not cfg.data.repeat or len(cfg.data.repeat) == len(cfg.data.train),
         f"must have one entry per data.train entry ({len(cfg.data.train)})"),
        ("data.repeat", all(isinstance(r, int) and r >= 0 for r in cfg.data.repeat)
         and (not cfg.data.repeat or any(cfg.data.repeat)),
         "entries must be integers >= 0, at least one of them > 0"),
        ("data.smaller_sizes", not cfg.data.smaller_sizes or not cfg.cross_protocol.datasets,
         "is for single-head supervised training, not cross_protocol"),
        ("data.flip", not cfg.data.flip or len(cfg.data.flip) == len(cfg.data.train),
         f"must have one entry per data.train entry ({len(cfg.data.train)})"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"config key {key!r} {why}")
    if not cfg.data.train and not cfg.cross_protocol.datasets:
        raise ConfigError("config key 'data.train' is empty: name at least one training dataset")


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ("optim.lr", 0.001): the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                check: bool = True) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Relative paths (datasets, ``data.cache_dir``, ``trainer.out_dir``, weights) written in
    the file are taken relative to the config file, so a run works from any directory; for
    the configs bundled with facemark, and for paths given in ``overrides``, they are
    relative to the current directory instead. Raises ConfigError for unknown keys, wrong types and out-of-range values.
    """
    tree: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
        base = path.resolve().parent
        if _is_bundled(path):  # package configs: data via $FACEMARK_DATA, outputs in the cwd
            base = Path.cwd()
    for text in overrides:  # typed at a shell: relative paths mean the current directory
        key, value = parse_override(text)
        _set_dotted(tree, key, _override_paths(key, value))
    cfg = _fill(TrainConfig, tree, "")
    for key in _PATH_KEYS:
        section, name = key.split(".")
        part = getattr(cfg, section)
        setattr(part, name, _resolve_value(key, getattr(part, name), base))
    for entry in cfg.cross_protocol.datasets:  # checked in facemark.training.cross_protocol
        for key in ("train", "val", "test"):
            specs = [entry[key]] if isinstance(entry.get(key), str) else entry.get(key)
            if isinstance(specs, list) and all(isinstance(x, str) for x in specs):
                entry[key] = [_resolve(x, base) for x in specs]
    cfg.data.scheme = _scheme_spec(cfg.data.scheme, base, check)
    if check:
        _check_ranges(cfg)
    return cfg


# Keys whose values are paths (or lists of dataset specs ``FORMAT:PATH``), the one table
# behind both the file's paths and the overrides'. An empty value means "none", except for
# the two folders, where it means the base folder itself.
_PATH_KEYS = ("data.train", "data.val", "data.test", "data.unlabelled", "data.cache_dir",
              "trainer.out_dir", "model.init_weights", "model.backbone_weights",
              "self_training.init_checkpoint")
_FOLDER_KEYS = ("data.cache_dir", "trainer.out_dir")


def _resolve_value(key: str, value: Any, base: Path) -> Any:
    """``value`` of the path-valued ``key`` with relative paths made absolute against
    ``base``; anything that is not a path (a wrong type, reported later) is returned as is."""
    if isinstance(value, list):
        return [_resolve(v, base) if isinstance(v, str) else v for v in value]
    if isinstance(value, str) and (value or key in _FOLDER_KEYS):
        return _resolve(value, base)
    return value


def _override_paths(key: str, value: Any) -> Any:
    """An override's value with relative paths made absolute against the current directory
    (paths written in a config file stay relative to that file)."""
    cwd = Path.cwd()
    if key == "data.scheme" and isinstance(value, str) and is_scheme_file(value):
        return _scheme_spec(value, cwd, check=False)
    return _resolve_value(key, value, cwd) if key in _PATH_KEYS else value


def _scheme_spec(spec: str, base: Path, check: bool) -> str:
    """``data.scheme``: a registered name, or a scheme file made absolute against ``base``
    (the config's folder); with ``check``, the name or file is checked now (ConfigError)."""
    import os

    if is_scheme_file(spec):
        p = Path(os.path.expandvars(os.path.expanduser(spec)))
        spec = str(p if p.is_absolute() else (base / p).resolve())
    if check:
        try:
            get_scheme(spec)
        except KeyError as e:
            raise ConfigError(f"config key 'data.scheme': {e.args[0]}") from None
        except ConfigError as e:
            raise ConfigError(f"config key 'data.scheme': {e}") from None
    return spec


def _is_bundled(path: Path) -> bool:
    package = Path(__file__).resolve().parents[1] / "configs"
    return package in path.resolve().parents


def _resolve(spec: str, base: Path) -> str:
    """Make the path part of ``FORMAT:PATH`` absolute against ``base``."""
    fmt, path = split_spec(spec)  # expands ~ and environment variables
    if "$" in path:
        return spec  # an unset variable: open_dataset reports it with a hint
    p = Path(path)
    if not p.is_absolute():
        p = (base / p).resolve()
    return f"{fmt}:{p}" if fmt else str(p)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write a config as YAML (atomically), e.g. next to a run's checkpoints."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

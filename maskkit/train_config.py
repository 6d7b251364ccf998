"""Training configuration: :class:`TrainConfig` and its sections, the presets, and how a
config is built from a preset, a dict, or a checkpoint to resume.

Every field is checked when the config is built, directly or from a preset or dict
(:class:`maskkit.errors.ConfigError` names the option at fault), before any process starts or
data is read; the strategy and codec names and options when training starts
(:meth:`TrainConfig.check_plugins`). A config is stored in every
checkpoint (``dataclasses.asdict``) and in the run folder's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .adversarial import AdversarialConfig
from .checkpoint import find_resume_checkpoint, load_checkpoint
from .codec import DEFAULT_CODEC
from .config import build_config, check_finite
from .errors import ConfigError
from .loss import LossConfig
from .model import ModelConfig

__all__ = ["ARCHITECTURE_KEYS", "PRESETS", "DataConfig", "OptimConfig", "TrainConfig", "preset_dict"]


@dataclass
class DataConfig:
    """Where the training pairs come from (see :func:`maskkit.data.make_datasets`)."""

    source: str | None = field(default=None, metadata={
        "help": "None / 'synthetic' (built-in synthetic music), a WAV-pairs folder or a folder of songs"})
    segment_seconds: float = field(default=4.0, metadata={"help": "length of each training pair (s)",
                                                          "min": 0.05})
    train_pairs: int = field(default=256, metadata={
        "help": "training pairs per epoch (synthetic music, folder of songs)", "min": 1})
    val_pairs: int = field(default=32, metadata={
        "help": "validation pairs (synthetic music, folder of songs)", "min": 1})
    val_fraction: float = field(default=0.1, metadata={
        "help": "share of a folder's songs held out for validation", "min": 0.0, "max": 0.9})
    skip_bad: bool = field(default=False, metadata={"help": "skip unreadable audio files with a warning"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per rank", "min": 0})
    style_labels: bool = field(default=False, metadata={
        "help": "condition the strategy on each pair's style label: the target song's subfolder (a folder "
                "of songs in one subfolder per style) or, for synthetic music, its drum groove"})

    def moved_source(self, recorded_in: str, how: str) -> str | None:
        """When the folder :attr:`source` names is gone (moved since ``recorded_in``, the
        checkpoint that records it, was written): the message saying where the path came from
        and ``how`` to give its new place. None when it is there (or the data is synthetic)."""
        src = self.source
        if src in (None, "synthetic") or os.path.exists(os.path.expanduser(str(src))):
            return None
        return (f"{src}: no such file or directory: the data this run trained on, as {recorded_in} records "
                f"it; if the songs moved, {how}")

    def datasets(self, sample_rate: int, seed: int, catalog: Any = None) -> tuple[Any, Any]:
        """The run's ``(train, val)`` datasets at ``sample_rate`` (its codec's), as the trainer
        builds them: :func:`maskkit.data.make_datasets` with these settings (``catalog``: the
        scan of a folder of songs, when made already)."""
        from .data import make_datasets

        return make_datasets(self.source, sample_rate=sample_rate, segment_seconds=self.segment_seconds,
                             seed=seed, train_pairs=self.train_pairs, val_pairs=self.val_pairs,
                             val_fraction=self.val_fraction, skip_bad=self.skip_bad,
                             style_labels=self.style_labels, catalog=catalog)

    def scan_part(self, shard: tuple[int, int] = (0, 1), threads: int | None = None, progress: Any = None,
                  known: Any = None) -> Any:
        """:func:`maskkit.data.scan_part` of a folder of songs (this process's ``shard`` of its
        files); None for other sources (and for a path that does not exist: :meth:`datasets`
        names it)."""
        from .data import detect_layout, scan_part

        if self.source in (None, "synthetic"):
            return None
        root = os.path.expanduser(str(self.source))
        if not os.path.isdir(root) or detect_layout(root) != "songs":
            return None
        return scan_part(root, segment_seconds=self.segment_seconds, shard=shard, threads=threads,
                         progress=progress, known=known)


@dataclass
class OptimConfig:
    """AdamW, the learning-rate schedule and gradient clipping."""

    lr: float = field(default=1e-3, metadata={"help": "peak learning rate", "min": 0.0})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay", "min": 0.0})
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int | None = field(default=None, metadata={
        "help": "linear warm-up steps (default: warmup_fraction of the run)", "min": 0})
    warmup_fraction: float = field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    min_lr_ratio: float = field(default=0.1, metadata={
        "help": "the cosine ends at lr * min_lr_ratio", "min": 0.0, "max": 1.0})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm (0: off)", "min": 0.0})
    grad_accum: int = field(default=1, metadata={
        "help": "micro-batches per optimizer step (gradient accumulation): the global batch is "
                "batch_size x processes x grad_accum", "min": 1})


#: The presets: nested overrides of TrainConfig's fields. ``small`` is the default (TrainConfig()).
#: Figures behind ``small`` (2-core CPU, synthetic data) are in docs/training.md.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {
        "model": {"d_model": 64, "nhead": 4, "num_layers": 1, "num_transformer_layers": 2,
                  "dim_feedforward": 128, "dropout": 0.0},
        "data": {"segment_seconds": 4.0, "train_pairs": 64, "val_pairs": 16},
        "optim": {"lr": 2e-3},
        "epochs": 8, "batch_size": 8, "patience": None,
    },
    "base": {
        "model": {"d_model": 128, "nhead": 4, "num_layers": 2, "num_transformer_layers": 3,
                  "dim_feedforward": 512, "dropout": 0.1},
        "data": {"segment_seconds": 4.0, "train_pairs": 2048, "val_pairs": 128, "num_workers": 4},
        "optim": {"lr": 3e-4},
        "epochs": 50, "batch_size": 8, "patience": 10,
    },
    "large": {
        "model": {"d_model": 256, "nhead": 8, "num_layers": 4, "num_transformer_layers": 3,
                  "dim_feedforward": 1024, "dropout": 0.1},
        "data": {"segment_seconds": 4.0, "train_pairs": 8192, "val_pairs": 256, "num_workers": 6},
        "optim": {"lr": 1e-4},
        "epochs": 200, "batch_size": 8, "patience": 20,
    },
}
_SMALL = PRESETS["small"]


#: Settings that define the model: a checkpoint can only be resumed with the same ones.
ARCHITECTURE_KEYS = ("strategy", "strategy_options", "codec", "codec_options", "model")


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint (``dataclasses.asdict``).

    The defaults are the ``small`` preset: synthetic data, a small model, a run of a few
    minutes on a 2-core CPU. :meth:`from_preset` gives ``base`` and ``large``.
    ``batch_size`` is per process: the global batch is ``batch_size * world_size``.
    """

    strategy: str = "creative-agent"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    codec: str = DEFAULT_CODEC
    codec_options: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(**_SMALL["model"]))
    loss: LossConfig = field(default_factory=lambda: LossConfig(**_SMALL.get("loss", {})))
    data: DataConfig = field(default_factory=lambda: DataConfig(**_SMALL["data"]))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(**_SMALL["optim"]))
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    epochs: int = _SMALL["epochs"]
    max_steps: int | None = None
    batch_size: int = _SMALL["batch_size"]
    patience: int | None = _SMALL["patience"]
    seed: int = 0
    checkpoint_dir: str | None = None
    save_every: int = 1
    keep_checkpoints: int = 2
    resume: str | None = None
    world_size: int | None = None
    device: str = "auto"
    bf16: bool | None = None
    compile: bool = False
    quiet: bool = False
    overwrite: bool = False
    log_every: int = 1
    snapshot_every: int = 0
    dist_timeout_s: float = 600.0
    max_bad_steps: int = 10
    simulate_preemption_at_step: int | None = None
    preset: str = "small"

    def __post_init__(self) -> None:
        # A section given as a dict (TrainConfig(model={"d_model": 32})): its other fields as the
        # default config's; then every value checked, as from_dict / from_preset do.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECTIONS and isinstance(value, Mapping):
                default = dataclasses.asdict(f.default_factory())  # type: ignore[misc]
                setattr(self, f.name, build_config(_SECTIONS[f.name], {**default, **value}, owner=f.name))
            elif f.name in _SECTIONS and not isinstance(value, _SECTIONS[f.name]):
                raise ConfigError(f"TrainConfig: {f.name} must be a {_SECTIONS[f.name].__name__} or a dict, "
                                  f"got {type(value).__name__}")
        self.validate()

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """A config from a (possibly partial, possibly nested) dict, e.g. a checkpoint's.

        Missing keys take the defaults of the dict's ``preset`` (``small`` if none); unknown
        keys and bad values raise :class:`ConfigError` naming them.
        """
        d = dict(d)
        base = preset_dict(d.get("preset") or "small")
        merged = _deep_merge(base, d)
        return _config_from_merged(merged)

    @classmethod
    def from_preset(cls, name: str = "small", **overrides: Any) -> TrainConfig:
        """The preset ``small`` | ``base`` | ``large`` with ``overrides`` on top; nested
        sections may be given as dicts (``model={"d_model": 256}``) that merge into the
        preset's."""
        merged = _deep_merge(preset_dict(name), _plain(overrides))
        merged["preset"] = name
        return _config_from_merged(merged)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        """The config stored in a checkpoint (with ``resume`` set to it), plus ``overrides``. How
        the run is launched (``world_size``, ``device``, ``quiet``, ``overwrite``) is not taken
        from the checkpoint: a run of 2 local processes resumes under srun with 4 tasks, a GPU
        run on a CPU node, a quiet batch job in a terminal that shows its progress."""
        return cls._continuing(load_checkpoint(path, require=("config",))["config"], path, overrides)

    @classmethod
    def _continuing(cls, saved: Mapping[str, Any] | None, path: str | os.PathLike[str],
                    overrides: Mapping[str, Any]) -> TrainConfig:
        """A checkpoint's stored config (``saved``, read from ``path``) with ``overrides`` on top."""
        launch_free = {k: v for k, v in (saved or {}).items() if k not in _LAUNCH_FIELDS}
        d = _deep_merge(launch_free, _plain(overrides))
        if "resume" not in overrides:
            d["resume"] = str(path)
        return cls.from_dict(d)

    @classmethod
    def for_resume(cls, resume: str | os.PathLike[str], /, preset: str | None = None, **overrides: Any
                   ) -> TrainConfig:
        """The config to continue a run: the checkpoint's settings with ``overrides`` on top.

        ``resume="auto"``: the newest complete checkpoint of the run folder (``checkpoint_dir``,
        or ``runs/<strategy>``); with none there yet, a new run of ``preset`` (default
        ``small``) with ``overrides``, so a requeued job can always pass ``auto``. A path: that
        checkpoint, whose own folder is the run folder unless ``checkpoint_dir`` says otherwise
        (a run copied elsewhere continues where it now is, and never writes over the folder it
        came from). ``preset`` given: its values under the checkpoint's. A ``strategy`` other
        than the checkpoint's is refused, naming both. A ``resume`` in ``overrides`` is ignored.
        """
        overrides.pop("resume", None)
        if str(resume) == "auto":
            run_dir = Path(overrides["checkpoint_dir"]) if overrides.get("checkpoint_dir") else \
                Path("runs") / overrides.get("strategy", cls.strategy)
            path = find_resume_checkpoint(run_dir, strict=not overrides.get("overwrite"))
            if path is None:
                return cls.from_preset(preset or "small", **{**overrides, "resume": "auto"})
        else:
            path = Path(resume)
        overrides = {**overrides, "resume": str(path)}
        if preset is not None:
            overrides["preset"] = preset
        overrides.setdefault("checkpoint_dir", str(path.parent))
        saved = load_checkpoint(path, require=("config",))["config"] or {}  # read once
        trained = saved.get("strategy")
        if "strategy" in overrides and trained and trained != overrides["strategy"]:
            raise ConfigError(
                f"cannot resume from {path}: it was trained with strategy '{trained}', not "
                f"'{overrides['strategy']}'. Drop --strategy to continue it, or start a new run in another "
                f"--checkpoint-dir")
        return cls._continuing(saved, path, overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- derived ----------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """Where checkpoints and metrics go: ``checkpoint_dir`` or ``runs/<strategy>``."""
        return Path(self.checkpoint_dir).expanduser() if self.checkpoint_dir else Path("runs") / self.strategy

    def validate(self) -> None:
        """Check the values that the sections do not check themselves."""
        check_finite(self)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (or None: no early stopping), got {self.patience}")
        if self.save_every < 1:
            raise ConfigError(f"save_every must be >= 1, got {self.save_every}")
        if self.keep_checkpoints < 2:
            raise ConfigError(f"keep_checkpoints must be >= 2 (a crash while writing must leave a "
                              f"good one), got {self.keep_checkpoints}")
        if self.snapshot_every < 0:
            raise ConfigError(f"snapshot_every must be >= 0 (0: no snapshots), got {self.snapshot_every}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")
        if self.dist_timeout_s <= 0:
            raise ConfigError(f"dist_timeout_s must be > 0, got {self.dist_timeout_s}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}. Available: {', '.join(PRESETS)}")
        if self.world_size is not None and self.world_size < 1:
            raise ConfigError(f"world_size must be >= 1, got {self.world_size}")
        if (self.device or "auto").split(":")[0] not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        self.model.validate()
        self.loss.validate()

    def check_plugins(self) -> None:
        """Check that the strategy and codec are installed and take these options (an error
        names them and lists the choices), before any process starts or data is read."""
        from .plugins import build_codec, get_strategy_entry

        entry = get_strategy_entry(self.strategy)
        build_config(entry.cls.Config, dict(self.strategy_options), owner=f"strategy '{entry.name}'")
        build_codec(self.codec, dict(self.codec_options))  # checks the codec's options


#: TrainConfig fields that describe how a run is launched, not what it trains: a resumed run
#: takes them from its own launch (the launcher, the command line), never from the checkpoint.
_LAUNCH_FIELDS = ("world_size", "device", "quiet", "overwrite")


def preset_dict(name: str) -> dict[str, Any]:
    """The full nested dict of a preset (TrainConfig's defaults overlaid with the preset)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}. Available: {', '.join(PRESETS)}")
    base = {f.name: f.default for f in dataclasses.fields(TrainConfig)
            if f.default is not dataclasses.MISSING}
    base.update({"strategy_options": {}, "codec_options": {},
                 "model": dataclasses.asdict(ModelConfig()), "loss": dataclasses.asdict(LossConfig()),
                 "data": dataclasses.asdict(DataConfig()), "optim": dataclasses.asdict(OptimConfig()),
                 "adversarial": dataclasses.asdict(AdversarialConfig())})
    merged = _deep_merge(base, PRESETS[name])
    merged["preset"] = name
    return merged


_SECTIONS: dict[str, type] = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig,
                              "optim": OptimConfig, "adversarial": AdversarialConfig}


def _plain(over: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides with dataclass sections turned into dicts (so that they merge)."""
    return {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v)
            for k, v in over.items()}


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k in _SECTIONS and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _config_from_merged(d: dict[str, Any]) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ConfigError(f"TrainConfig: unknown option(s) {', '.join(unknown)}. "
                          f"Valid options: {', '.join(sorted(fields))}")
    kwargs = {k: dict(v or {}) if k in ("strategy_options", "codec_options") else v for k, v in d.items()}
    return TrainConfig(**kwargs)  # (sections given as dicts are built, and all checked, on construction)

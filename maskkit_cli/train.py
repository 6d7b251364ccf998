"""``maskkit train``: a thin wrapper that builds a :class:`maskkit.train.TrainConfig` and calls
:func:`maskkit.train.train`. torch is imported only when the command runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ._types import FINITE

if TYPE_CHECKING:
    from maskkit.train_config import TrainConfig

_PRESETS = ("small", "base", "large")


def _given(ctx: click.Context, name: str) -> bool:
    """True when the user typed the option (not its default)."""
    src = ctx.get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


@click.command("train", context_settings={"show_default": False, "max_content_width": 110})
@click.option("--strategy", metavar="NAME",
              help="Mask strategy (see `maskkit strategies`). [default: creative-agent]")
@click.option("--strategy-opt", "strategy_opts", multiple=True, metavar="KEY=VALUE",
              help="A strategy option (repeatable; `maskkit strategies show NAME` lists them).")
@click.option("--codec", metavar="NAME", help="Codec audio <-> encoding (`maskkit codecs`). [default: stft]")
@click.option("--codec-opt", "codec_opts", multiple=True, metavar="KEY=VALUE",
              help="A codec option (repeatable).")
@click.option("--data", "--dataset-folder", "--dataset_folder", "data", metavar="DIR",
              help="A WAV-pairs folder or a folder of songs. [default: built-in synthetic music]")
@click.option("--preset", type=click.Choice(_PRESETS), default="small", show_default=True,
              help="small: minutes on a laptop CPU with synthetic data; base / large: real data on GPUs.")
@click.option("--epochs", "--num-epochs", "--num_epochs", "epochs", type=int, help="Epochs to train.")
@click.option("--max-steps", type=click.IntRange(min=0),
              help="Stop after this many optimizer steps (caps the schedule); 0: no cap (lifts a "
                   "checkpoint's cap on --resume).")
@click.option("--batch-size", "--batch_size", "batch_size", type=int,
              help="Pairs per step PER PROCESS (global batch = batch size x world size).")
@click.option("--lr", type=FINITE, help="Peak learning rate (AdamW, cosine schedule with warm-up).")
@click.option("--weight-decay", type=FINITE, help="AdamW weight decay.")
@click.option("--warmup-steps", type=int, help="Linear warm-up steps [default: 5% of the run].")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), help="LR schedule after warm-up.")
@click.option("--grad-clip", type=FINITE, help="Max global gradient norm (0 = off). [default: 1.0]")
@click.option("--grad-accum", type=click.IntRange(min=1),
              help="Micro-batches per optimizer step (gradient accumulation): global batch = batch size x "
                   "processes x N. [default: 1]")
@click.option("--patience", type=int, help="Early stopping: epochs without a better validation loss.")
@click.option("--mask-reg-weight", "--mask_reg_weight", "mask_reg_weight", type=FINITE,
              help="Weight of the strategy's regularization loss. [default: 0.1]")
@click.option("--balance-weight", type=FINITE, help="Weight of the strategy's balance loss. [default: 0.1]")
@click.option("--d-model", type=int, help="Width of each cascade stage's transformer.")
@click.option("--nhead", type=int, help="Attention heads per layer.")
@click.option("--num-layers", type=int, help="Transformer layers per cascade stage.")
@click.option("--num-transformer-layers", "--num_transformer_layers", "num_transformer_layers", type=int,
              help="Cascade stages (the seed's name).")
@click.option("--dropout", type=FINITE, help="Dropout in the model.")
@click.option("--hard-masks", is_flag=True, default=None,
              help="Train with the strategy's hard (0/1) masks, straight-through; arrange and masks then "
                   "use them too.")
@click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE",
              help="Any other ModelConfig option (repeatable).")
@click.option("--loss-opt", "loss_opts", multiple=True, metavar="KEY=VALUE",
              help="Any LossConfig option, e.g. mel_weight=0.5 (repeatable).")
@click.option("--adversarial-weight", type=FINITE,
              help="Adversarial training with the strategy's critic: weight of the generator's adversarial "
                   "loss (0 = off; the seed suggests 0.01). [default: 0]")
@click.option("--disc-lr", type=FINITE, help="The critic's learning rate. [default: 2e-4]")
@click.option("--disc-update-freq", type=int, help="Update the critic every N generator steps. [default: 1]")
@click.option("--adversarial-warmup-epochs", "--adv-warmup-epochs", "adversarial_warmup_epochs", type=int,
              help="Epochs of plain training before the adversarial phase. [default: 1]")
@click.option("--segment-seconds", type=FINITE, help="Length of each training pair in seconds.")
@click.option("--train-pairs", type=int,
              help="Training pairs per epoch (synthetic music or a folder of songs; WAV pairs: all of them).")
@click.option("--val-pairs", type=int,
              help="Validation pairs (synthetic music or a folder of songs; WAV pairs: all of them).")
@click.option("--val-fraction", type=FINITE, help="Share of a folder's songs held out for validation.")
@click.option("--num-workers", type=int, help="DataLoader worker processes per rank.")
@click.option("--style-labels", is_flag=True, default=None,
              help="Condition the strategy on each pair's style label: the target song's subfolder "
                   "(DIR/<style>/song.wav), or for synthetic music its drum groove; then "
                   "`maskkit arrange --style NAME`.")
@click.option("--skip-bad", is_flag=True, default=None, help="Skip unreadable audio files with a warning.")
@click.option("--checkpoint-dir", "--checkpoint_dir", "checkpoint_dir", metavar="DIR",
              help="Run folder: checkpoints and metrics. [default: runs/<strategy>]")
@click.option("--save-every", type=int,
              help="Keep an epoch_NNNN.pt every N epochs (and after the last). [default: 1]")
@click.option("--keep-checkpoints", type=int, help="How many epoch_NNNN.pt to keep (>= 2). [default: 2]")
@click.option("--resume", metavar="PATH|auto",
              help="Continue from a checkpoint; auto = the newest in the run folder (a new run if none).")
@click.option("--world-size", "--world_size", "world_size", type=int,
              help="Local processes to spawn. Leave out under torchrun / srun (they set it).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto]")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast. [default: on with CUDA, off on CPU]")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--seed", type=int, help="Seed of initialisation, data and shuffling. [default: 0]")
@click.option("--snapshot-every", type=int, metavar="N",
              help="Every N epochs save mask and attention pictures and per-pair summaries of a few "
                   "validation pairs to <checkpoint-dir>/snapshots/ (0 = never). [default: 0]")
@click.option("--log-every", type=int, help="Write a metrics row every N steps. [default: 1]")
@click.option("--dist-timeout", type=FINITE, help="Seconds before a collective gives up. [default: 600]")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
@click.option("--overwrite", is_flag=True, default=None,
              help="Start a new run in a run folder that holds another run's checkpoints, deleting them "
                   "(without it such a folder is refused: continue it with --resume auto).")
@click.option("--encoding-dim", "--encoding_dim", "encoding_dim", type=int,
              help="The seed's flag: checked against the codec's D (the codec decides it).")
@click.option("--use-creative-agent", "--use_creative_agent", "use_creative_agent", metavar="true|false",
              help="The seed's flag: true = --strategy creative-agent; false = a fixed strategy (temporal).")
@click.option("--simulate-preemption-at-step", type=int, hidden=True,
              help="Behave as if SIGTERM arrived after this step (to test a resume set-up).")
@click.pass_context
def train(ctx: click.Context, **opts: Any) -> None:
    """Train the arrangement model with any mask strategy.

    \b
    One process:            maskkit train --strategy creative-agent
    N local processes:      maskkit train --world-size 2
    torchrun:               torchrun --nproc-per-node 4 -m maskkit train --data DIR --preset base
    SLURM:                  srun maskkit train --data DIR --preset base   (examples/slurm/)
    After a preemption:     maskkit train ... --resume auto

    On SIGTERM / Ctrl-C every process stops after the same step, a checkpoint is saved, and the
    command exits with 143 (SIGTERM) or 130 (SIGINT). See docs/training.md.
    """
    from maskkit.distributed import hold_stop_signals

    with hold_stop_signals():  # to the end of the command a signal is a stop request
        cfg = build_config_from_cli(ctx, opts)
        from maskkit.train import train as run_training

        result = run_training(cfg)
    if result.exit_code:
        sys.exit(result.exit_code)


def build_config_from_cli(ctx: click.Context, opts: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` the command line describes (the CLI's whole job)."""
    from maskkit.config import parse_bool, parse_kv
    from maskkit.errors import ConfigError
    from maskkit.plugins import build_codec
    from maskkit.train_config import TrainConfig

    def given(name: str) -> bool:
        return _given(ctx, name) and opts.get(name) is not None

    strategy = opts["strategy"]
    if opts["use_creative_agent"] is not None:
        use = parse_bool(opts["use_creative_agent"], "--use_creative_agent")
        if use:
            if strategy not in (None, "creative-agent"):
                raise ConfigError(f"--use_creative_agent true contradicts --strategy {strategy}")
            strategy = "creative-agent"
        elif strategy is None:
            strategy = "temporal"
        elif strategy == "creative-agent":
            raise ConfigError("--use_creative_agent false contradicts --strategy creative-agent")

    over: dict[str, Any] = {}
    model: dict[str, Any] = {}
    loss: dict[str, Any] = {}
    data: dict[str, Any] = {}
    optim: dict[str, Any] = {}
    adv: dict[str, Any] = {}
    if strategy is not None:
        over["strategy"] = strategy
    if opts["strategy_opts"]:
        over["strategy_options"] = parse_kv(opts["strategy_opts"], "--strategy-opt")
    if opts["codec"] is not None:
        over["codec"] = opts["codec"]
    if opts["codec_opts"]:
        over["codec_options"] = parse_kv(opts["codec_opts"], "--codec-opt")
    for name, key in (("epochs", "epochs"), ("max_steps", "max_steps"), ("batch_size", "batch_size"),
                      ("patience", "patience"), ("checkpoint_dir", "checkpoint_dir"),
                      ("save_every", "save_every"), ("keep_checkpoints", "keep_checkpoints"),
                      ("world_size", "world_size"), ("device", "device"), ("bf16", "bf16"),
                      ("compile_", "compile"), ("seed", "seed"), ("log_every", "log_every"),
                      ("snapshot_every", "snapshot_every"),
                      ("dist_timeout", "dist_timeout_s"), ("quiet", "quiet"), ("overwrite", "overwrite"),
                      ("simulate_preemption_at_step", "simulate_preemption_at_step")):
        if given(name):
            over[key] = opts[name]
    if given("max_steps") and opts["max_steps"] == 0:
        over["max_steps"] = None  # --max-steps 0: no cap (None overrides a checkpoint's)
    if opts["model_opts"]:
        model.update(parse_kv(opts["model_opts"], "--model-opt"))
    for name in ("d_model", "nhead", "num_layers", "num_transformer_layers", "dropout", "hard_masks"):
        if given(name):
            _given_once(model, name, "--model-opt")
            model[name] = opts[name]
    if opts["loss_opts"]:
        loss.update(parse_kv(opts["loss_opts"], "--loss-opt"))
    for name in ("mask_reg_weight", "balance_weight"):
        if given(name):
            _given_once(loss, name, "--loss-opt")
            loss[name] = opts[name]
    if given("data"):
        data["source"] = opts["data"]
    for name in ("segment_seconds", "train_pairs", "val_pairs", "val_fraction", "num_workers", "skip_bad",
                 "style_labels"):
        if given(name):
            data[name] = opts[name]
    for name in ("lr", "weight_decay", "warmup_steps", "schedule", "grad_clip", "grad_accum"):
        if given(name):
            optim[name] = opts[name]
    for name, key in (("adversarial_weight", "weight"), ("disc_lr", "disc_lr"),
                      ("disc_update_freq", "disc_update_freq"),
                      ("adversarial_warmup_epochs", "warmup_epochs")):
        if given(name):
            adv[key] = opts[name]
    for section, values in (("model", model), ("loss", loss), ("data", data), ("optim", optim),
                            ("adversarial", adv)):
        if values:
            over[section] = values

    resume = opts["resume"]
    if resume is not None:
        over["resume"] = resume
        cfg = _config_for_resume(ctx, resume, over, opts["preset"])
    else:
        cfg = TrainConfig.from_preset(opts["preset"], **over)

    cfg.check_plugins()  # names and options, before any process starts (train() checks them too)
    if given("encoding_dim"):
        dim = build_codec(cfg.codec, dict(cfg.codec_options)).spec.dim
        if dim != opts["encoding_dim"]:
            raise ConfigError(
                f"--encoding_dim {opts['encoding_dim']} does not match codec '{cfg.codec}', whose encoding "
                f"has D={dim} channels: the codec decides D (drop --encoding_dim, or choose codec options "
                f"that give {opts['encoding_dim']})")
    return cfg


def _given_once(section: dict[str, Any], name: str, option: str) -> None:
    """An option given both as its own flag and through ``option`` KEY=VALUE is an error (one
    of the two would be dropped without a word)."""
    from maskkit.errors import ConfigError

    if name in section:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{option} {name}={section[name]} and {flag} both set {name}: give it once")


def _config_for_resume(ctx: click.Context, resume: str, over: dict[str, Any], preset: str) -> TrainConfig:
    """With --resume, the checkpoint's own settings are the base; options typed now override them."""
    from maskkit.train_config import TrainConfig

    return TrainConfig.for_resume(resume, preset=preset if _given(ctx, "preset") else None, **over)

"""The benchmark harness (``maskkit.bench`` and ``maskkit bench``), on tiny shapes."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from maskkit import ConfigError, Masks, MaskStrategy, UnknownNameError, hookimpl
from maskkit.bench import (
    BenchConfig,
    Timing,
    load_bench_data,
    peak_memory_mib,
    run_bench,
    time_interleaved,
)
from maskkit.metrics import ENERGY_METRICS, energy_metrics, mask_metrics

TINY = dict(random=True, batch_size=3, dim=8, frames=24, warmup=0, repeats=2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _all_metrics(data, masks) -> dict[str, float]:
    """What the bench reports of a row's masks: maskkit.metrics' mask and energy metrics."""
    return {**mask_metrics(masks.input_mask, masks.target_mask),
            **energy_metrics(data.x_input, data.x_target, masks.input_mask, masks.target_mask)}


# -- strategies written here and registered at run time, as a user would ----------------------
class TinyLearned(MaskStrategy):
    """A learnable strategy: a 1x1 conv on the pair, sigmoid, complement-seeking reg loss."""

    name = "test-tiny-learned"
    learnable = True

    @dataclass
    class Config:
        hidden: int = 4

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        D = self.spec.dim
        self.net = nn.Sequential(nn.Conv1d(2 * D, self.config.hidden, 1), nn.Tanh(),
                                 nn.Conv1d(self.config.hidden, 2 * D, 1))

    def forward(self, x_input, x_target, *, hard=False):
        m = torch.sigmoid(self.net(torch.cat([x_input, x_target], dim=1)))
        mi, mt = m.chunk(2, dim=1)
        if hard:  # straight-through
            mi = (mi > mt).to(mi.dtype) + (mi - mi.detach())
            mt = 1 - mi
        return Masks(mi, mt, reg_loss=(mi * mt).mean())


class BoomForward(MaskStrategy):
    name = "test-boom-forward"

    def forward(self, x_input, x_target, *, hard=False):
        raise RuntimeError("kaboom in forward")


class BoomBuild(MaskStrategy):
    name = "test-boom-build"

    def __init__(self, config=None, *, spec=None):
        raise ValueError("kaboom in __init__")


class OutOfRange(MaskStrategy):
    name = "test-out-of-range"

    def forward(self, x_input, x_target, *, hard=False):
        return Masks(torch.full_like(x_input, 2.0), torch.zeros_like(x_input))


class _TestPlugin:
    @hookimpl
    def register_strategies(self, register):
        for cls in (TinyLearned, BoomForward, BoomBuild, OutOfRange):
            register(cls)


@pytest.fixture
def test_plugin(fresh_plugins):
    name = fresh_plugins.register_plugin(_TestPlugin(), "bench-test-plugin")
    yield name
    fresh_plugins.unregister_plugin(name)


# -- metrics ---------------------------------------------------------------------------------
def test_json_metrics_equal_maskkit_metrics_computed_directly(test_plugin, tmp_path):
    from maskkit.plugins import build_strategy, get_strategy_entry

    names = ["temporal", "frequency", "energy", "none", "test-tiny-learned"]
    result = run_bench(strategies=names, **TINY)
    out = json.loads(result.write_json(tmp_path / "out.json").read_text())
    data = load_bench_data(result.config, torch.device("cpu"))
    rows = {r["name"]: r for r in out["rows"]}
    assert set(rows) == set(names)
    for name in names:
        torch.manual_seed(result.config.seed)
        strategy = build_strategy(name, None, spec=data.spec).eval()
        with torch.no_grad():
            masks = strategy(data.x_input, data.x_target)
        expected = _all_metrics(data, masks)
        assert rows[name]["error"] is None
        assert rows[name]["metrics"] == pytest.approx(expected, rel=1e-6, abs=1e-9), name
        assert rows[name]["learnable"] == get_strategy_entry(name).cls.learnable
    # every metric of maskkit.metrics, and nothing recomputed under another name
    assert set(rows["temporal"]["metrics"]) == {*mask_metrics(torch.ones(1, 1, 2), torch.zeros(1, 1, 2)),
                                                *ENERGY_METRICS}


def test_every_registered_strategy_has_a_row_with_every_metric(test_plugin):
    from maskkit.plugins import strategy_names

    result = run_bench(strategies="all", **TINY)
    assert [r.name for r in result.rows] == strategy_names()
    assert "test-tiny-learned" in strategy_names()  # registered at run time, no harness change
    keys = {*mask_metrics(torch.ones(1, 1, 2), torch.zeros(1, 1, 2)), *ENERGY_METRICS}
    for r in result.rows:
        if r.error is None:
            assert set(r.metrics) == keys and all(math.isfinite(v) for v in r.metrics.values())
            assert r.forward is not None and r.pairs_per_s and r.pairs_per_s > 0


def test_two_runs_with_the_same_seed_agree(test_plugin):
    names = "temporal,energy,spectral,test-tiny-learned"
    a = run_bench(strategies=names, seed=3, **TINY)
    b = run_bench(strategies=names, seed=3, **TINY)
    assert [r.metrics for r in a.rows] == [r.metrics for r in b.rows]
    c = run_bench(strategies="test-tiny-learned", seed=4, **TINY)
    assert c.rows[0].metrics != a.row("test-tiny-learned").metrics


def test_learnable_rows_have_params_and_forward_backward(test_plugin):
    result = run_bench(strategies="temporal,test-tiny-learned", **TINY)
    learned, fixed = result.row("test-tiny-learned"), result.row("temporal")
    assert learned.variant == "untrained" and learned.kind == "learned"
    from maskkit import EncodingSpec

    assert learned.params == sum(p.numel() for p in TinyLearned(spec=EncodingSpec(dim=8)).parameters())
    assert learned.fwd_bwd is not None and learned.fwd_bwd.repeats == 2
    assert learned.fwd_bwd_pairs_per_s > 0
    assert fixed.variant == "fixed" and fixed.params == 0 and fixed.fwd_bwd is None


# -- failures are rows, not crashes ----------------------------------------------------------
def test_a_raising_strategy_is_reported_and_the_others_still_run(test_plugin, tmp_path):
    result = run_bench(strategies="test-boom-build,temporal,test-boom-forward,test-out-of-range,none",
                       **TINY)
    build, fwd, rng = (result.row(n) for n in ("test-boom-build", "test-boom-forward", "test-out-of-range"))
    assert build.error.startswith("build: ValueError") and "kaboom in __init__" in build.error
    assert fwd.error.startswith("forward: RuntimeError") and "kaboom in forward" in fwd.error
    assert "outside [0, 1]" in rng.error and "test-out-of-range" in rng.error
    assert "Traceback" in fwd.traceback
    assert fwd.metrics == {} and fwd.forward is None
    for ok in ("temporal", "none"):
        assert result.row(ok).error is None and result.row(ok).metrics
    out = json.loads(result.write_json(tmp_path / "o.json").read_text())
    assert {r["name"]: r["error"] is not None for r in out["rows"]} == {
        "test-boom-build": True, "temporal": False, "test-boom-forward": True,
        "test-out-of-range": True, "none": False}
    result.tables()  # rows with errors format


def test_bad_options_raise_naming_the_option(fresh_plugins):
    with pytest.raises(ConfigError, match="dtype"):
        run_bench(dtype="float8", **TINY)
    with pytest.raises(ConfigError, match="batch_size"):
        run_bench(**{**TINY, "batch_size": 0})
    with pytest.raises(UnknownNameError, match="no-such-strategy"):
        run_bench(strategies="temporal,no-such-strategy", **TINY)
    with pytest.raises(ConfigError, match="random.*data"):
        run_bench(data="somewhere", **TINY)
    with pytest.raises(ConfigError, match="'temporl'.*not among"):
        run_bench(strategies="temporal", strategy_options={"temporl": {"segment": 3}}, **TINY)
    with pytest.raises(ConfigError, match=r"--train-opt\) is for the quick training run: .*--train-steps"):
        run_bench(strategies="temporal", train_options={"batch_size": 2}, **TINY)  # (was ignored, exit 0)
    from maskkit.plugins import get_strategy_entry

    temporal, frequency = (get_strategy_entry(n).cls for n in ("temporal", "frequency"))
    with pytest.raises(ConfigError, match=r"strategy_options for 'temporal' must be key=value options or its "
                                          r"own Config \(TemporalConfig\), got FrequencyConfig"):
        run_bench(strategies="temporal", strategy_options={"temporal": frequency.Config()}, **TINY)
    own = run_bench(strategies="temporal", strategy_options={"temporal": temporal.Config(segment=6)}, **TINY)
    assert own.row("temporal").error is None and own.row("temporal").metrics["temporal_diversity"] > 0
    twice = run_bench(strategies="temporal,none,temporal", **TINY)  # one row each
    assert [r.name for r in twice.rows] == ["temporal", "none"]


def test_a_bad_strategy_option_is_refused_before_any_work(fresh_plugins):
    """As a variant's are: a typo ran the whole bench, wrote its files with an error row, exit 1."""
    for opts, says in (({"segmnt": 3}, "unknown option 'segmnt'"), ({"segment": 0}, "'segment' must be >= 1"),
                       ({"segment": "abc"}, "'segment' expects an integer")):
        with pytest.raises(ConfigError, match=f"--strategy-opt temporal:.*strategy 'temporal'.*{says}"):
            run_bench(strategies="temporal,none", strategy_options={"temporal": opts}, **TINY)


# -- output files ----------------------------------------------------------------------------
def test_json_and_csv_hold_every_figure_and_the_environment(test_plugin, tmp_path):
    result = run_bench(strategies="temporal,test-tiny-learned", **TINY)
    out = json.loads(result.write_json(tmp_path / "o.json").read_text())
    env = out["environment"]
    assert env["torch_version"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["device"] == "cpu" and env["device_name"] and env["maskkit_version"]
    assert out["shapes"] == {"batch": 3, "dim": 8, "frames": 24}
    row = next(r for r in out["rows"] if r["name"] == "test-tiny-learned")
    assert row["forward"]["median_ms"] > 0 and row["fwd_bwd"]["repeats"] == 2
    with (result.write_csv(tmp_path / "o.csv")).open() as f:
        lines = list(csv.DictReader(f))
    assert [line["name"] for line in lines] == ["temporal", "test-tiny-learned"]
    line = lines[1]
    assert float(line["metric_complementarity"]) == pytest.approx(row["metrics"]["complementarity"])
    assert float(line["forward_median_ms"]) == pytest.approx(row["forward"]["median_ms"])
    assert line["env_torch_version"] == torch.__version__ and line["shape_frames"] == "24"


def _png_size(path):
    blob = path.read_bytes()
    assert blob[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert blob[12:16] == b"IHDR"
    return int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")


def test_plots_are_valid_pngs(test_plugin, tmp_path):
    pytest.importorskip("matplotlib")
    result = run_bench(strategies="temporal,frequency,test-tiny-learned,test-boom-forward", **TINY)
    paths = result.write_plots(tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["masks.png", "speed.png"]
    for p in paths:
        w, h = _png_size(p)
        assert w > 100 and h > 100
        from PIL import Image

        with Image.open(p) as im:
            im.verify()
    # one mask pair per strategy that ran (the failing one has none): taller than 2 rows
    assert _png_size(tmp_path / "plots" / "masks.png")[1] > _png_size(tmp_path / "plots" / "speed.png")[1]


def test_plots_without_matplotlib_say_how_to_install(fresh_plugins, tmp_path, monkeypatch):
    from maskkit import MaskkitError

    result = run_bench(strategies="temporal", **TINY)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MaskkitError, match=r"maskkit\[plots\]"):
        result.write_plots(tmp_path)


# -- measuring helpers -----------------------------------------------------------------------
def test_timing_statistics():
    t = Timing.from_seconds([0.004, 0.001, 0.003, 0.002, 0.010])
    assert (t.median_ms, t.min_ms, t.max_ms, t.repeats) == pytest.approx((3.0, 1.0, 10.0, 5))
    assert t.q1_ms == pytest.approx(2.0) and t.q3_ms == pytest.approx(4.0)
    one = Timing.from_seconds([0.005])
    assert one.median_ms == one.q1_ms == one.max_ms == pytest.approx(5.0)


def test_time_interleaved_alternates_the_two_calls():
    calls = []
    a, b = time_interleaved(lambda: calls.append("A"), lambda: calls.append("B"), torch.device("cpu"),
                            warmup=1, repeats=4)
    assert "".join(calls) == "AB" + "AB" "BA" "AB" "BA"  # warm-up, then ABBA order
    assert a.repeats == b.repeats == 4 and a.min_ms >= 0 and b.min_ms >= 0
    calls.clear()
    a, _ = time_interleaved(lambda: calls.append("A"), lambda: None, torch.device("cpu"), warmup=0,
                            repeats=100, max_seconds=0.0, min_repeats=3)
    assert a.repeats == 3 and calls == ["A"] * 3  # stops once min_repeats are timed past max_seconds


def test_peak_memory_sees_a_large_allocation():
    def allocate():
        x = torch.ones(16 * 2**20 // 4)  # 16 MiB, every page written
        time.sleep(0.01)
        return x.sum()

    def nothing():
        time.sleep(0.01)

    big = peak_memory_mib(allocate, torch.device("cpu"))
    if big is None:
        pytest.skip("no /proc/self/statm on this system")
    assert big >= 12.0
    assert peak_memory_mib(nothing, torch.device("cpu")) < big / 2


# -- reference and training (built by other modules) -----------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("maskkit.reference") is None, reason="maskkit.reference missing")
def test_reference_rows_and_ratios(test_plugin):
    result = run_bench(strategies="temporal,test-tiny-learned", reference=True, **TINY)
    gen, tmp = result.row("RefMaskGenerator"), result.row("ref_temporal_mask")
    assert gen.error is None and tmp.error is None, (gen.error, tmp.error)
    assert gen.kind == tmp.kind == "reference" and gen.params > 0 and gen.fwd_bwd is not None
    assert gen.speed_ratio == tmp.speed_ratio == gen.fwd_bwd_ratio == 1.0
    learned, fixed = result.row("test-tiny-learned"), result.row("temporal")
    assert learned.ratio_to == "RefMaskGenerator" and fixed.ratio_to == "ref_temporal_mask"
    # ratios from the reference timed side by side with each row (same number of calls)
    assert learned.ref_forward.repeats == learned.forward.repeats
    assert learned.speed_ratio == pytest.approx(learned.ref_forward.median_ms / learned.forward.median_ms)
    assert learned.fwd_bwd_ratio == pytest.approx(learned.ref_fwd_bwd.median_ms / learned.fwd_bwd.median_ms)
    assert fixed.speed_ratio == pytest.approx(fixed.ref_forward.median_ms / fixed.forward.median_ms)
    assert fixed.fwd_bwd_ratio is None and fixed.ref_fwd_bwd is None
    # the naive temporal mask and the project's temporal strategy agree (segment 150 > T: all input)
    assert tmp.metrics == pytest.approx(fixed.metrics)


# -- CLI -------------------------------------------------------------------------------------
def test_cli_writes_json_csv_and_prints_the_tables(test_plugin, tmp_path):
    from maskkit_cli.main import cli

    args = ["bench", "--random", "--strategies", "temporal,test-tiny-learned,test-boom-forward",
            "--strategy-opt", "temporal:segment=6", "--batch-size", "2", "--dim", "8", "--frames", "24",
            "--warmup", "0", "--repeats", "2", "--json", str(tmp_path / "o.json"),
            "--csv", str(tmp_path / "o.csv"), "--markdown", str(tmp_path / "o.md"), "--no-progress"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 1, res.output  # one row failed: the tables and files are still all there
    assert "Mask quality" in res.output and "Speed and cost" in res.output
    assert "kaboom in forward" in res.output and "1 error(s)" in res.output
    assert "tracebacks are in the JSON" in res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert [r["name"] for r in out["rows"]] == ["temporal", "test-tiny-learned", "test-boom-forward"]
    assert out["config"]["strategy_options"] == {"temporal": {"segment": "6"}}
    assert out["rows"][0]["metrics"]["temporal_diversity"] > 0  # segment=6 on 24 frames alternates
    assert (tmp_path / "o.csv").read_text().startswith("label,")
    md = (tmp_path / "o.md").read_text()
    assert "**Mask quality" in md and "| temporal |" in md and "| test-tiny-learned (untrained) |" in md
    assert "**Errors**" in md and "kaboom in forward" in md  # (the table cell has the type only)


_PAGE_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "steady":
    from maskkit.bench import steady_allocator
    assert steady_allocator()
x, m = torch.randn(4, 514, 376), torch.rand(1, 1, 376)
def call():  # a strategy's step: three 3 MB temporaries, freed at the end
    a = x * m; b = x * (1 - m); return float((a + b)[0, 0, 0])
for _ in range(3):
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    call()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_bench_allocator_keeps_freed_memory_so_calls_do_not_page_fault():
    """Timings once depended on the allocator's state: a 0.1 ms rule read 1.8 ms with a tight
    range when every call's few MB came from fresh pages (glibc trims its heap's free top
    after each call). After steady_allocator the calls reuse the heap: no page faults."""
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS, mode], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    plain = faults("plain")  # 7,000-45,000 here (a fresh 3 MB is ~750 pages)
    if plain < 20 * 100:  # this allocator does not trim like glibc: nothing to show here
        pytest.skip(f"the plain allocator did not page-fault ({plain} faults in 20 calls)")
    steady = faults("steady")  # 0 here, now and then one fresh block's 750
    assert steady * 4 < plain, (steady, plain)


def test_cli_logs_one_line_a_step_when_not_on_a_terminal(fresh_plugins):
    """Piped into a log file (a cluster job), the progress bar is off: a long --train-steps bench
    once said nothing until the end."""
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["bench", "--random", "--strategies", "temporal,none", "--batch-size", "2",
                                   "--dim", "8", "--frames", "24", "--warmup", "0", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("bench [")]
    assert [ln.split("] ", 1)[1] for ln in lines] == ["loading data", "measuring temporal", "measuring none",
                                                      "done"]
    assert lines[0].startswith("bench [1/3, ") and lines[-1].startswith("bench [3/3, ")


def test_cli_rejects_bad_input_with_a_clear_message(fresh_plugins):
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["bench", "--random", "--strategies", "nope", "--no-progress"])
    assert res.exit_code == 2 and "option 'strategies' (--strategies): unknown strategy 'nope'" in res.output
    res = CliRunner().invoke(cli, ["bench", "--random", "--batch-size", "0", "--no-progress"])
    assert res.exit_code == 2 and "option 'batch_size' (--batch-size) must be >= 1, got 0" in res.output
    res = CliRunner().invoke(cli, ["bench", "--random", "--strategy-opt", "segment=3", "--no-progress"])
    assert res.exit_code == 2 and "NAME:key=value" in res.output


def test_cli_progress_bar_runs(fresh_plugins, tmp_path):
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["bench", "--random", "--strategies", "temporal", "--batch-size", "2",
                                   "--dim", "4", "--frames", "8", "--warmup", "0", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    assert "temporal" in res.output


def test_bench_config_defaults_are_the_documented_ones():
    cfg = BenchConfig()
    assert (cfg.strategies, cfg.batch_size, cfg.repeats, cfg.warmup, cfg.device, cfg.dtype) == (
        "all", 4, 10, 2, "cpu", "float32")


# -- trained strategies from checkpoints -----------------------------------------------------
def _tiny_checkpoint(path, scale=3.0, name="test-tiny-learned", hard_masks=None):
    from maskkit import EncodingSpec
    from maskkit.checkpoint import CHECKPOINT_FORMAT, atomic_save

    torch.manual_seed(123)
    s = TinyLearned({"hidden": 4}, spec=EncodingSpec(dim=8))
    with torch.no_grad():
        for p in s.parameters():
            p.mul_(scale)
    atomic_save({"format_version": CHECKPOINT_FORMAT, "kind": "maskkit-train",
                 "model": {f"strategy.{k}": v for k, v in s.state_dict().items()},
                 "strategy": {"name": name, "options": {"hidden": 4}},
                 "spec": {"dim": 8, "frame_rate": None, "sample_rate": None, "channel_freqs": None},
                 **({} if hard_masks is None else {"config": {"model": {"hard_masks": hard_masks}}})}, path)
    return s.eval()


def test_checkpoints_add_trained_rows_with_their_weights(test_plugin, tmp_path):
    trained = _tiny_checkpoint(tmp_path / "a.pt")
    _tiny_checkpoint(tmp_path / "bad.pt", name="not-installed")
    result = run_bench(strategies="test-tiny-learned",
                       checkpoints=[str(tmp_path / "a.pt"), str(tmp_path / "bad.pt")], **TINY)
    untrained = result.row("test-tiny-learned", "untrained")
    row = result.row("test-tiny-learned", "trained")
    assert row.error is None and row.checkpoint == str(tmp_path / "a.pt") and "a.pt" in row.label
    data = load_bench_data(result.config, torch.device("cpu"))
    with torch.no_grad():
        masks = trained(data.x_input, data.x_target)
    assert row.metrics == pytest.approx(_all_metrics(data, masks), rel=1e-6)
    assert row.metrics != untrained.metrics
    bad = result.rows[-1]
    assert bad.variant == "trained" and "bad.pt needs strategy 'not-installed'" in bad.error


def test_a_checkpoint_trained_on_hard_masks_is_measured_on_them(test_plugin, tmp_path):
    trained = _tiny_checkpoint(tmp_path / "h.pt", hard_masks=True)
    result = run_bench(strategies="test-tiny-learned", checkpoints=[str(tmp_path / "h.pt")], **TINY)
    row = result.row("test-tiny-learned", "trained")
    assert row.error is None and row.hard_masks
    assert row.label.endswith(f"(trained: {tmp_path.name}/h.pt, hard masks)")  # the run's folder names it
    data = load_bench_data(result.config, torch.device("cpu"))
    with torch.no_grad():
        masks = trained(data.x_input, data.x_target, hard=True)
    assert row.metrics == pytest.approx(_all_metrics(data, masks), rel=1e-6)
    assert row.metrics["complementarity"] == pytest.approx(100.0)


# -- quick training comparison ---------------------------------------------------------------
TINY_TRAIN = {"batch_size": "2", "data.train_pairs": 4, "data.val_pairs": 2, "data.segment_seconds": 0.25,
              "model.d_model": 16, "model.nhead": 2, "model.dim_feedforward": 32, "model.num_layers": 1}


def test_example_masks_are_drawn_low_to_high_frequency(tmp_path):
    """As `maskkit masks` draws them: masks.png showed the stft codec's real then imaginary
    channels, so 'frequency' read as two bands instead of one split."""
    result = run_bench(strategies="frequency", batch_size=1, segment_seconds=0.25, warmup=0, repeats=1)
    assert result.channels_by_frequency
    first = result.row("frequency").example_masks[0][:, 0]  # input mask, one frame, channels in order
    assert torch.all(first[:-1] >= first[1:])  # low band (kept) first, then the rest: one split
    assert (result.write_plots(tmp_path)[0]).name == "masks.png"


def test_the_quick_training_uses_the_benchs_pair_length(tmp_path):
    """--segment-seconds 1 measured masks on 94 frames but trained on the preset's 4 s pairs, so
    a note about the quick training spoke of pairs it never saw."""
    opts = {k: v for k, v in TINY_TRAIN.items() if k != "data.segment_seconds"}
    run_bench(strategies="temporal", batch_size=2, segment_seconds=0.5, warmup=0, repeats=1, train_steps=1,
              train_options={**opts, "checkpoint_dir": str(tmp_path / "runs")})
    config = json.loads((tmp_path / "runs" / "temporal" / "config.json").read_text())
    assert config["data"]["segment_seconds"] == 0.5


@pytest.mark.skipif(importlib.util.find_spec("maskkit.train") is None, reason="maskkit.train missing")
def test_train_steps_give_a_finite_loss_and_similarities_per_strategy(test_plugin, tmp_path):
    result = run_bench(strategies="temporal,none,test-tiny-learned,test-boom-forward", train_steps=2,
                       train_options=TINY_TRAIN, **TINY)
    for name in ("temporal", "none", "test-tiny-learned"):
        tr = result.row(name).train
        assert tr is not None and "error" not in tr, (name, tr)
        assert tr["steps"] == 2
        for key in ("val_loss", "val_reconstruction", "lsd_input", "lsd_target", "si_sdr_input",
                    "si_sdr_target"):
            assert math.isfinite(tr[key]), (name, key, tr)
    # val loss = reconstruction + the strategy's own (weighted) regularization: the learned one
    # carries a term the rules do not, so 'val recon' is the like-for-like column
    tiny = result.row("test-tiny-learned").train
    assert tiny["val_loss"] > tiny["val_reconstruction"]
    assert result.row("temporal").train["val_loss"] == pytest.approx(result.row("temporal").train[
        "val_reconstruction"])
    # 'none' keeps both songs whole; temporal (segment 150 > T) passes the input only: said, as its
    # quick training 'wins' by passing the input through
    assert result.row("temporal").train["si_sdr_input"] > result.row("none").train["si_sdr_input"]
    (note,) = [n for n in result.notes() if n.startswith("temporal ")]
    assert "only the input song on these 24 frames (balance 1.000)" in note and "quick training" in note
    assert "**Notes**" in result.markdown()
    assert result.row("test-boom-forward").train["error"].startswith("train: ")
    assert ("test-boom-forward", result.row("test-boom-forward").error) in result.errors()
    assert any(label == "test-boom-forward" and e.startswith("training: train: ")
               for label, e in result.errors())
    out = json.loads(result.write_json(tmp_path / "o.json").read_text())
    assert out["train"]["steps"] == 2
    assert next(r for r in out["rows"] if r["name"] == "none")["train"]["val_loss"] > 0
    assert "Quick training" in result.markdown() and "| val recon |" in result.markdown()


# -- audio data: synthetic music and a folder of songs through the default codec -------------
def test_default_data_is_synthetic_music_through_the_stft_codec(fresh_plugins):
    result = run_bench(strategies="frequency,temporal", batch_size=2, frames=12, warmup=0, repeats=1)
    from maskkit.plugins import build_codec

    codec = build_codec("stft")
    assert result.shapes == {"batch": 2, "dim": codec.spec.dim, "frames": 12}
    assert result.data.startswith("synthetic music, stft codec")
    data = load_bench_data(result.config, torch.device("cpu"))
    assert data.spec == codec.spec  # frequency splits in Hz with the codec's channel frequencies
    assert float(data.x_input.abs().mean()) > 0 and not torch.equal(data.x_input, data.x_target)
    assert torch.equal(data.x_input, load_bench_data(result.config, torch.device("cpu")).x_input)
    assert result.row("frequency").error is None and result.row("temporal").error is None


def test_data_folder_through_the_cli(fresh_plugins, tmp_path):
    import numpy as np
    import soundfile as sf

    songs = tmp_path / "songs"
    songs.mkdir()
    t = np.arange(24000 * 2) / 24000
    for i, f0 in enumerate((110.0, 220.0, 330.0, 440.0, 550.0)):
        sf.write(songs / f"song{i}.wav", 0.3 * np.sin(2 * np.pi * f0 * t).astype(np.float32), 24000)
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["bench", "--data", str(songs), "--strategies", "energy,spectral",
                                   "--batch-size", "2", "--frames", "10", "--warmup", "0", "--repeats", "1",
                                   "--json", str(tmp_path / "o.json"), "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["data"].startswith(f"folder {songs}") and out["shapes"]["frames"] == 10
    assert all(r["error"] is None and r["metrics"] for r in out["rows"])
    # A bad file stops the bench naming it and the option that skips it; --skip-bad does so, saying so.
    (songs / "broken.wav").write_bytes(b"RIFF0000WAVE")
    args = ["bench", "--data", str(songs), "--strategies", "energy", "--batch-size", "2", "--frames", "10",
            "--warmup", "0", "--repeats", "1", "--json", str(tmp_path / "o.json"), "--no-progress"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "broken.wav" in res.output and "--skip-bad" in res.output, res.output
    with pytest.warns(UserWarning, match=r"skipped 1 bad file\(s\) of .*broken\.wav"):
        res = CliRunner().invoke(cli, [*args, "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert "1 bad file(s) skipped" in json.loads((tmp_path / "o.json").read_text())["data"]


def test_device_auto_also_reaches_the_quick_training(tmp_path):
    """--device auto picks a device for the tables; the quick training's model loads on it too
    (it failed there with torch's 'Expected one of cpu, cuda, ...')."""
    opts = {k: v for k, v in TINY_TRAIN.items() if k != "data.segment_seconds"}
    result = run_bench(strategies="temporal", batch_size=2, segment_seconds=0.5, warmup=0, repeats=1,
                       train_steps=1, device="auto",
                       train_options={**opts, "checkpoint_dir": str(tmp_path / "runs")})
    (row,) = result.rows
    assert not row.error and row.train is not None and row.train["steps"] == 1

"""``maskkit curves``: training curves and the run summary from a run's metrics.jsonl."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_train import tiny

from maskkit.curves import load_runs, plot_curves, run_summary, smooth
from maskkit.errors import MaskkitError
from maskkit.logging_utils import MetricsLogger
from maskkit.train import train
from maskkit_cli.main import cli


def fake_run(path: Path, losses: list[float], val: list[float], tag: str = "") -> Path:
    """A run folder as the trainer writes it: a step row per loss, an epoch row every 4 steps."""
    log = MetricsLogger(path, tensorboard=False)
    for i, loss in enumerate(losses, start=1):
        log.log({"kind": "step", "epoch": (i - 1) // 4 + 1, "step": i, "lr": 1e-3, "loss": loss,
                 "complementarity": 70.0 + i, **({tag: 1.0} if tag else {})})
        if i % 4 == 0:
            log.log({"kind": "epoch", "epoch": i // 4, "step": i, "train_loss": loss,
                     "val_loss": val[i // 4 - 1], "val_complementarity": 80.0 + i,
                     "val_coverage_error": 0.01 * i})
    log.close()
    return path


def test_smoothing_is_debiased_exponential_and_skips_non_finite_values():
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no pull towards 0
    s = smooth([1.0, 3.0], 0.5)
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx((0.25 + 1.5) / 0.75)
    with_nan = smooth([1.0, float("nan"), 1.0], 0.5)
    assert with_nan == pytest.approx([1.0, 1.0, 1.0])
    assert smooth([5.0, 1.0], 0.0) == [5.0, 1.0]
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth([1.0], 1.0)


def test_curves_and_summary_of_a_run(tmp_path):
    run = fake_run(tmp_path / "a", [4.0, 3.0, 2.5, 2.0, 1.8, 1.7, 1.6, 1.5], [3.0, 1.9])
    (r,) = load_runs([run])
    train_c, val_c = r.curves("loss")
    assert (train_c.kind, train_c.steps, train_c.values[:2]) == ("train", list(range(1, 9)), [4.0, 3.0])
    assert (val_c.kind, val_c.steps, val_c.values) == ("val", [4, 8], [3.0, 1.9])
    assert [c.kind for c in r.curves("coverage_error")] == ["val"]  # logged at validation only
    assert "coverage_error" in r.metrics() and "loss" in r.metrics() and "lr" in r.metrics()
    assert "time_s" not in r.metrics() and "step" not in r.metrics()
    assert run_summary(r) == {"run": "a", "steps": 8, "epochs": 2, "best_val_loss": 1.9, "last_val_loss": 1.9,
                              "last_val_complementarity": 88.0}


def test_nan_validation_loss_is_not_the_best(tmp_path):
    (r,) = load_runs([fake_run(tmp_path / "a", [1.0] * 8, [2.0, float("nan")])])
    s = run_summary(r)
    assert s["best_val_loss"] == 2.0 and math.isnan(s["last_val_loss"])


def test_runs_with_the_same_folder_name_get_their_parents_name(tmp_path):
    a = fake_run(tmp_path / "x" / "run", [1.0] * 4, [1.0])
    b = fake_run(tmp_path / "y" / "run", [1.0] * 4, [1.0])
    assert [r.label for r in load_runs([a, b])] == ["x/run", "y/run"]


def test_bad_runs_and_metrics_are_named(tmp_path):
    with pytest.raises(MaskkitError, match="does not exist"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskkitError, match=r"empty has no metrics.jsonl"):
        load_runs([tmp_path / "empty"])
    runs = load_runs([fake_run(tmp_path / "a", [1.0] * 4, [1.0])])
    with pytest.raises(MaskkitError, match=r"no run logged 'stft_input'; logged metrics: .*complementarity"):
        plot_curves(runs, tmp_path / "c.png", metrics=["stft_input"])
    with pytest.raises(MaskkitError, match="smoothing"):
        plot_curves(runs, tmp_path / "c.png", smoothing=1.5)
    assert not (tmp_path / "c.png").exists()


def test_cli_draws_several_runs_and_prints_the_summary(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib import image

    a = fake_run(tmp_path / "temporal", [4.0, 3.0, 2.0, 1.0], [2.5])
    b = fake_run(tmp_path / "creative-agent", [5.0, 4.0, 3.0, 2.0], [3.5], tag="adv_gen_loss")
    out = tmp_path / "cmp.png"
    res = CliRunner().invoke(cli, ["curves", str(a), str(b), "--png", str(out), "--metric", "loss",
                                   "--metric", "val_coverage_error", "--metric", "adv_gen_loss"])
    assert res.exit_code == 0, res.output
    assert "temporal" in res.output and "creative-agent" in res.output and "2.5000" in res.output
    assert image.imread(out).shape[0] > 600  # three panels


def test_cli_default_picture_lands_in_the_run_folder_of_a_real_run(tmp_path):
    pytest.importorskip("matplotlib")
    r = train(tiny(tmp_path / "run", "--train-pairs", "8", "--batch-size", "4", "--epochs", "2"))
    res = CliRunner().invoke(cli, ["curves", r.run_dir])
    assert res.exit_code == 0, res.output
    assert (Path(r.run_dir) / "curves.png").stat().st_size > 10_000
    assert f"{r.best_val_loss:.4f}" in res.output
    assert re.search(r"│\s+4\s+│\s+2\s+│", res.output), res.output  # 4 steps, 2 epochs


def test_without_matplotlib_the_error_says_how_to_install(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "a", [1.0] * 4, [1.0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = CliRunner().invoke(cli, ["curves", str(run)])
    assert res.exit_code != 0 and 'pip install "maskkit[plots]"' in res.output


def test_a_partial_epoch_row_is_not_counted_twice_and_lr_is_drawn_unsmoothed(tmp_path, monkeypatch):
    from maskkit import curves

    run = fake_run(tmp_path / "a", [1.0] * 8, [2.0, 1.5])
    with open(run / "metrics.jsonl", "a") as f:  # a --max-steps stop inside epoch 2, then its end
        f.write('{"kind": "epoch", "epoch": 2, "step": 6, "val_loss": 1.7}\n')
    (r,) = load_runs([run])
    assert run_summary(r)["epochs"] == 2
    drawn = []
    monkeypatch.setattr(curves, "line_panels", lambda panels, path, **kw: drawn.extend(panels) or path)
    plot_curves([r], tmp_path / "x.png", metrics=["lr"], smoothing=0.9)
    (label, lines), = drawn
    assert label == "lr" and [ln.style for ln in lines] == ["line"] and list(lines[0].y) == [1e-3] * 8

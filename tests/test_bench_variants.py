"""Named variants in the bench: the same strategy with and without an option, side by side."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner

from maskkit import ConfigError
from maskkit.bench import (
    BenchConfig,
    parse_variant,
    parse_variants,
    resolve_variants,
    run_bench,
    train_overrides,
)

TINY = dict(random=True, batch_size=3, dim=8, frames=24, warmup=0, repeats=2)
#: A quick training comparison small enough for a unit test (as in tests/test_bench.py).
TINY_TRAIN = {"batch_size": "2", "data.train_pairs": 4, "data.val_pairs": 2, "data.segment_seconds": 0.25,
              "model.d_model": 16, "model.nhead": 2, "model.dim_feedforward": 32, "model.num_layers": 1}
needs_train = pytest.mark.skipif(importlib.util.find_spec("maskkit.train") is None,
                                 reason="maskkit.train missing")


# -- parsing ---------------------------------------------------------------------------------
def test_parse_splits_strategy_options_from_train_overrides():
    v = parse_variant("ms=creative-agent  scales=1,8,32 train.optim.lr=0.001 train.data.train_pairs=8")
    assert (v.label, v.strategy) == ("ms", "creative-agent")
    assert v.strategy_options == {"scales": "1,8,32"}
    assert v.train == {"optim.lr": "0.001", "data.train_pairs": "8"}
    assert v.train_overrides() == {"optim": {"lr": "0.001"}, "data": {"train_pairs": "8"}}
    plain = parse_variant("plain=creative-agent")
    assert (plain.strategy_options, plain.train) == ({}, {})


def test_labels_are_unique_and_a_single_string_is_one_variant():
    assert [v.label for v in parse_variants(["a=temporal", "b=temporal segment=3"])] == ["a", "b"]
    assert [v.label for v in parse_variants("a=temporal segment=3")] == ["a"]
    with pytest.raises(ConfigError, match="label 'a' is already used by variant 'a=temporal'"):
        parse_variants(["a=temporal", "a=frequency"])


def test_dotted_train_keys_nest_at_any_depth():
    assert train_overrides({"a.b.c": 1, "a.b.d": 2, "a.e": 3, "batch_size": "4"}) == {
        "batch_size": 4, "a": {"b": {"c": 1, "d": 2}, "e": 3}}


@needs_train
def test_resolved_values_have_their_types(fresh_plugins):
    cfg = BenchConfig(strategies="temporal", **TINY, train_steps=1, variants=[
        "seg6=temporal segment=6 fade=0 train.optim.lr=0.001 train.batch_size=2 train.data.skip_bad=true"])
    (v,) = resolve_variants(cfg, ["temporal"])
    assert v.strategy_options == {"segment": 6, "fade": 0}
    assert type(v.strategy_options["segment"]) is int
    assert v.train == {"optim.lr": 0.001, "batch_size": 2, "data.skip_bad": True}


def test_strategy_options_of_strategy_opt_are_the_base_of_a_variant(fresh_plugins):
    cfg = BenchConfig(strategies="", strategy_options={"temporal": {"segment": "6", "fade": "2"}}, **TINY,
                      variants=["a=temporal fade=0"])
    (v,) = resolve_variants(cfg, [])
    assert v.strategy_options == {"segment": 6, "fade": 0}


# -- errors name the variant and what is wrong -----------------------------------------------
@pytest.mark.parametrize(("variants", "message"), [
    (["temporal segment=6"], r"variant 'temporal segment=6'.*LABEL=STRATEGY"),
    (["=temporal"], r"variant '=temporal'.*LABEL=STRATEGY"),
    (["a="], r"variant 'a='.*LABEL=STRATEGY"),
    ([""], r"variant ''.*empty"),
    (["a=temporal segment"], r"variant 'a=temporal segment'.*key=value.*'segment'"),
    (["a=temporal segment=3 segment=4"], r"'segment' is given twice"),
    (["a/b=temporal"], r"variant 'a/b=temporal'.*label 'a/b'"),
    (["a=temporal", "a=temporal segment=3"], r"variant 'a=temporal segment=3'.*label 'a' is already used"),
    (["Fast=temporal", "fast=temporal segment=3"], r"label 'fast' is already used .*differ only in case"),
    (["a=temporal train..lr=1"], r"'train..lr' is not a dotted"),
    (["a=temporal train.seed=3"], r"'train.seed' cannot be set per variant"),
    (["a=temporal optim.lr=1"], r"'optim.lr' has a dot.*train.optim.lr=1"),
])
def test_malformed_variants_raise_naming_them(fresh_plugins, variants, message):
    with pytest.raises(ConfigError, match=message):
        BenchConfig(variants=variants).validate()
    with pytest.raises(ConfigError, match=message):
        run_bench(strategies="temporal", variants=variants, **TINY)


@pytest.mark.parametrize(("strategies", "variant", "message"), [
    ("temporal", "a=no-such-strategy", r"variant 'a=no-such-strategy'.*unknown strategy 'no-such-strategy'"),
    ("temporal,none", "none=temporal segment=6",
     r"variant 'none=temporal segment=6'.*label 'none'.*another row"),
    ("temporal", "a=temporal segmnt=6", r"variant 'a=temporal segmnt=6'.*unknown option 'segmnt'"),
    ("temporal", "a=temporal segment=six", r"variant 'a=temporal segment=six'.*'segment' expects an integer"),
    # train.* without --train-steps would be dropped without a word
    ("temporal", "a=temporal train.optim.lr=0.5", r"variant 'a=temporal train.optim.lr=0.5': its train\.\* "
                                                  r"options are for the quick training run.*--train-steps"),
])
def test_variants_that_do_not_fit_the_registry_raise_naming_them(fresh_plugins, strategies, variant, message):
    with pytest.raises(ConfigError, match=message):
        run_bench(strategies=strategies, variants=[variant], **TINY)


@needs_train
@pytest.mark.parametrize(("variant", "message"), [
    ("a=temporal train.optim.lrr=0.1", r"variant 'a=temporal train.optim.lrr=0.1'.*unknown option 'lrr'"),
    ("a=temporal train.no_such_section.x=1",
     r"variant 'a=temporal train.no_such_section.x=1'.*no_such_section"),
    ("a=temporal train.optim.lr=fast", r"variant 'a=temporal train.optim.lr=fast'.*'lr' expects a number"),
])
def test_unknown_train_keys_raise_before_the_run_naming_variant_and_key(fresh_plugins, variant, message):
    with pytest.raises(ConfigError, match=message):
        run_bench(strategies="temporal", variants=[variant], train_steps=2, **TINY)


def test_an_empty_selection_needs_variants(fresh_plugins):
    with pytest.raises(ConfigError, match="nothing to benchmark"):
        run_bench(strategies="", **TINY)


# -- rows ------------------------------------------------------------------------------------
def test_two_variants_of_one_strategy_give_two_labelled_rows(fresh_plugins, tmp_path):
    result = run_bench(strategies="temporal", **TINY,
                       variants=["seg6=temporal segment=6", "seg16=temporal segment=16"])
    assert [r.label for r in result.rows] == ["temporal", "seg6", "seg16"]
    assert [r.name for r in result.rows] == ["temporal"] * 3
    plain, a, b = result.rows
    assert (plain.variant_label, a.variant_label, b.variant_label) == (None, "seg6", "seg16")
    assert a.variant_spec == "seg6=temporal segment=6"
    assert all(r.error is None for r in result.rows)
    assert result.row("seg6") is a and result.row("temporal") is plain
    assert not torch.equal(a.example_masks[0], b.example_masks[0])
    assert a.metrics != b.metrics
    assert a.metrics["balance"] == pytest.approx(0.5) and b.metrics["balance"] != pytest.approx(0.5)
    out = json.loads(result.write_json(tmp_path / "o.json").read_text())
    assert [(r["label"], r["name"], r["variant_label"]) for r in out["rows"]] == [
        ("temporal", "temporal", None), ("seg6", "temporal", "seg6"), ("seg16", "temporal", "seg16")]
    assert out["config"]["variants"] == ["seg6=temporal segment=6", "seg16=temporal segment=16"]
    assert out["variants"][0]["strategy_options"] == {"segment": 6}
    with result.write_csv(tmp_path / "o.csv").open() as f:
        assert [line["label"] for line in csv.DictReader(f)] == ["temporal", "seg6", "seg16"]
    md = result.markdown()
    assert "| seg6 |" in md and "| seg16 |" in md


def test_a_learned_variant_is_labelled_untrained(fresh_plugins):
    result = run_bench(strategies="", variants=["ca=creative-agent"], **{**TINY, "dim": 8})
    (row,) = result.rows
    assert row.name == "creative-agent" and row.label == "ca (untrained)" and row.error is None


@needs_train
def test_train_comparison_applies_a_variants_train_override_to_its_row_only(fresh_plugins, tmp_path):
    result = run_bench(strategies="temporal", variants=["fast=temporal train.optim.lr=0.05"], train_steps=2,
                       train_options={**TINY_TRAIN, "checkpoint_dir": str(tmp_path / "runs")}, **TINY)
    plain, fast = result.row("temporal"), result.row("fast")
    for r in (plain, fast):
        assert r.train is not None and "error" not in r.train, r.train
        assert r.train["steps"] == 2
    assert plain.train["val_loss"] != fast.train["val_loss"]  # same data, seed and model; another lr
    from maskkit.checkpoint import load_checkpoint

    def lr(label):
        (ckpt,) = sorted((tmp_path / "runs" / label).glob("*.pt"))[-1:]
        return load_checkpoint(ckpt)["config"]["optim"]["lr"]

    assert lr("fast") == pytest.approx(0.05) and lr("temporal") != pytest.approx(0.05)
    assert result.train["variant_options"] == {"fast": {"optim.lr": 0.05}}
    md = result.markdown()
    assert "Quick training" in md and "| fast |" in md.split("Quick training")[1]


def test_issue9_options_as_variants_train_and_report(fresh_plugins, tmp_path):
    """Adversarial training and style labels are trainer options: each variant trains with its own."""
    pytest.importorskip("maskkit_creative_agent")
    ca = "creative-agent hidden_dim=8 num_heads=2"
    result = run_bench(strategies="", train_steps=2, variants=[
        f"plain={ca}", f"adv={ca} train.adversarial.weight=0.1 train.adversarial.warmup_epochs=0",
        f"style={ca} train.data.style_labels=true"],
        train_options={**TINY_TRAIN, "checkpoint_dir": str(tmp_path / "runs")}, **TINY)
    rows = {k: result.row(k).train for k in ("plain", "adv", "style")}
    for k, t in rows.items():
        assert t is not None and "error" not in t and t["steps"] == 2, (k, t)
    assert len({t["val_loss"] for t in rows.values()}) == 3
    from maskkit.checkpoint import load_checkpoint

    def last(label):
        return load_checkpoint(sorted((tmp_path / "runs" / label).glob("last.pt"))[0])

    assert last("adv")["critic"] is not None and last("plain")["critic"] is None
    assert last("style")["styles"] and last("plain")["styles"] is None


# -- CLI -------------------------------------------------------------------------------------
def test_cli_variant_writes_the_labels_to_json(fresh_plugins, tmp_path):
    from maskkit_cli.main import cli

    args = ["bench", "--random", "--strategies", "", "--batch-size", "2", "--dim", "8", "--frames", "24",
            "--warmup", "0", "--repeats", "1", "--no-progress", "--json", str(tmp_path / "o.json"),
            "--variant", "seg6=temporal segment=6", "--variant", "seg16=temporal segment=16"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "seg6" in res.output and "seg16" in res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert [(r["label"], r["name"]) for r in out["rows"]] == [("seg6", "temporal"), ("seg16", "temporal")]
    assert out["config"]["variants"] == ["seg6=temporal segment=6", "seg16=temporal segment=16"]


def test_cli_rejects_a_bad_variant_naming_it(fresh_plugins):
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["bench", "--random", "--strategies", "temporal", "--no-progress",
                                   "--variant", "temporal=temporal segment=6"])
    assert res.exit_code == 2 and "temporal=temporal segment=6" in res.output and "label" in res.output
    res = CliRunner().invoke(cli, ["bench", "--help"])
    assert "--variant" in res.output and "multiscale=creative-agent scales=1,8,32" in res.output


def test_a_variants_nested_train_option_adds_to_the_benchs_own(monkeypatch, tmp_path):
    """``train.codec_options.hop_length=32`` adds to the bench's codec options instead of
    replacing them (the settings used to be updated shallowly)."""
    import maskkit.train
    from maskkit.bench import BenchConfig, train_and_evaluate

    seen = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        raise RuntimeError("stop here")

    monkeypatch.setattr(maskkit.train, "train", fake_train)
    cfg = BenchConfig(codec_options={"n_fft": 64}, train_steps=1)
    with pytest.raises(RuntimeError, match="stop here"):
        train_and_evaluate("temporal", cfg, tmp_path, train_overrides({"codec_options.hop_length": "32"}))
    assert seen["cfg"].codec_options == {"n_fft": 64, "hop_length": "32"}


def test_a_variant_label_that_differs_from_a_row_only_in_case_is_refused(fresh_plugins):
    """Each row trains in a folder named by its label: 'Temporal' and 'temporal' are one folder on
    macOS and Windows."""
    with pytest.raises(ConfigError, match=r"label 'Temporal' is the name of another row .*'temporal'"):
        run_bench(strategies="temporal", variants=["Temporal=temporal segment=3"], **TINY)

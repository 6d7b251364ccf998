"""Style conditioning: style labels from the data, the creative-agent's FiLM, the trainer, arrange --style."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
from test_train import _tone, load_checkpoint, tiny

from maskkit import ConfigError, EncodingSpec
from maskkit.data import StyledPairs, SyntheticPairs, make_datasets
from maskkit.plugins import build_strategy
from maskkit.synth import GROOVES, describe_song
from maskkit.train import load_model, train

pytest.importorskip("maskkit_creative_agent")

SEED_PARAMETERS = 1_083_904
AGENT = ("--strategy", "creative-agent", "--strategy-opt", "hidden_dim=8", "--strategy-opt", "num_heads=2")


def pair(B=3, D=16, T=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, T, generator=g), torch.randn(B, D, T, generator=g)


def song_folder(root: Path, layout: dict[str, int], sr: int = 8000) -> Path:
    i = 0
    for style, n in layout.items():
        d = root / style if style else root
        d.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            sf.write(d / f"song{i}.wav", _tone(1.0, sr, 120 + 40 * i, i), sr)
            i += 1
    return root


# -- data ---------------------------------------------------------------------------------------------
def test_synthetic_styles_are_the_target_songs_groove():
    ds = SyntheticPairs(6, seconds=0.25, sample_rate=8000, seed=3)
    assert ds.style_names == GROOVES
    for i in range(6):
        assert GROOVES[ds.style_of(i)] == describe_song(ds.song_seeds(i)[1]).groove
    styled = StyledPairs(ds)
    x_in, x_tg, style = styled[2]
    ref_in, ref_tg = ds[2]
    assert torch.equal(x_in, ref_in) and torch.equal(x_tg, ref_tg) and style == ds.style_of(2)
    styled.set_epoch(1)  # delegated: the wrapped set draws the next epoch's songs
    assert ds.epoch == 1 and len(styled) == 6


def test_folder_styles_come_from_subfolders(tmp_path):
    root = song_folder(tmp_path / "songs", {"jazz": 3, "rock": 3})
    tr, va = make_datasets(str(root), sample_rate=8000, segment_seconds=0.5, train_pairs=8, val_pairs=4,
                           val_fraction=0.34, style_labels=True)
    assert tr.style_names == va.style_names == ("jazz", "rock")
    for ds in (tr, va):
        for i in range(len(ds)):
            _, _, meta = ds.dataset.item_with_sources(i)
            assert ds.style_names[ds[i][2]] == Path(meta["target"]["path"]).parent.name


def test_a_linked_style_folder_is_named_as_linked(tmp_path):
    """A style subfolder that is a link to music kept elsewhere takes the link's name (it used
    to fail with a bare ValueError: the resolved path was outside the folder of songs)."""
    elsewhere = song_folder(tmp_path / "elsewhere", {"jazz": 3})
    root = song_folder(tmp_path / "songs", {"rock": 3})
    (root / "swing").symlink_to(elsewhere / "jazz")
    tr, va = make_datasets(str(root), sample_rate=8000, segment_seconds=0.5, train_pairs=8, val_pairs=4,
                           val_fraction=0.34, style_labels=True)
    assert tr.style_names == ("rock", "swing")
    for i in range(len(tr)):
        _, _, meta = tr.dataset.item_with_sources(i)
        target = Path(meta["target"]["path"])
        assert tr.style_names[tr[i][2]] == target.parent.name and target.is_relative_to(root)


def test_data_synth_by_style_writes_the_folder_style_labels_read(tmp_path):
    """`maskkit data synth --by-style` puts each song in its groove's subfolder, so the folder
    trains with --style-labels and each song's label is the groove the built-in data gives it."""
    import json

    from click.testing import CliRunner

    from maskkit_cli.main import cli

    out = tmp_path / "syn"
    args = ["data", "synth", str(out), "--songs", "8", "--seconds", "1.0", "--sample-rate", "8000",
            "--by-style"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "songs.json").read_text())["songs"]
    assert len({r["groove"] for r in rows}) >= 2  # else the check below proves little
    for r in rows:
        assert r["file"] == f"{r['groove']}/{Path(r['file']).name}" and (out / r["file"]).is_file()
    assert not list(out.glob("song_*.wav"))
    tr, _ = make_datasets(str(out), sample_rate=8000, segment_seconds=0.5, train_pairs=8, val_pairs=4,
                          val_fraction=0.25, style_labels=True)
    assert set(tr.style_names) == {r["groove"] for r in rows}
    grooves = {Path(r["file"]).name: r["groove"] for r in rows}
    for i in range(len(tr)):
        _, _, meta = tr.dataset.item_with_sources(i)
        assert tr.style_names[tr[i][2]] == grooves[Path(meta["target"]["path"]).name]
    # --overwrite without --by-style replaces the whole set, style folders included
    res = CliRunner().invoke(cli, [*args[:-1], "--overwrite"])
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("song_*.wav"))) == 8 and not [p for p in out.iterdir() if p.name in GROOVES]
    # A song of one's own in a folder named like a groove is not taken for a synthetic one:
    # refused, --overwrite or not, and kept.
    mine = out / "backbeat" / "song_live.wav"
    mine.parent.mkdir()
    mine.write_bytes((out / "song_0000.wav").read_bytes())
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(cli, [*args, *extra])
        assert res.exit_code == 2 and "holds 1 audio file(s) of its own" in res.output, res.output
    assert mine.is_file() and len(list(out.glob("song_*.wav"))) == 8


def test_style_label_errors_name_the_culprit(tmp_path):
    root = song_folder(tmp_path / "songs", {"jazz": 3, "": 2})
    with pytest.raises(ConfigError, match=r"song3\.wav is directly in"):
        make_datasets(str(root), sample_rate=8000, segment_seconds=0.5, style_labels=True)
    pairs = tmp_path / "pairs" / "train"
    pairs.mkdir(parents=True)
    for i in range(2):
        for part in ("input", "output"):
            sf.write(pairs / f"pair_{i}_{part}.wav", _tone(1.0, 8000, 200, i), 8000)
    with pytest.raises(ConfigError, match="WAV pairs, which carry no style labels"):
        make_datasets(str(tmp_path / "pairs"), sample_rate=8000, segment_seconds=0.5, style_labels=True)


# -- the creative-agent's conditioning ----------------------------------------------------------------
def test_default_agent_is_unchanged():
    s = build_strategy("creative-agent", {}, spec=EncodingSpec(dim=128))
    assert s.config.num_styles == 0 and s.mask_generator.style_film is None
    assert sum(p.numel() for p in s.parameters()) == SEED_PARAMETERS
    assert not any("style" in k for k in s.state_dict())
    on = build_strategy("creative-agent", {"num_styles": 5}, spec=EncodingSpec(dim=128))
    assert sum(p.numel() for p in on.parameters()) == SEED_PARAMETERS + 5 * 4 * 256


def test_untrained_conditioning_is_the_identity_and_trained_styles_differ():
    torch.manual_seed(0)
    s = build_strategy("creative-agent", {"hidden_dim": 16, "num_heads": 2, "num_styles": 3},
                       spec=EncodingSpec(dim=16)).eval()
    xi, xt = pair()
    plain = s(xi, xt)
    styled = s(xi, xt, style=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(plain.input_mask, styled.input_mask)  # zero-initialised FiLM
    with torch.no_grad():
        s.mask_generator.style_film.weight.normal_()
    a, b = s(xi, xt, style=torch.tensor([0, 0, 0])), s(xi, xt, style=torch.tensor([1, 1, 1]))
    assert (a.input_mask - b.input_mask).abs().max() > 1e-3
    # one label for the whole batch is broadcast
    torch.testing.assert_close(s(xi, xt, style=torch.tensor(1)).input_mask, b.input_mask)
    # gradients reach the style table
    s.train()
    s(xi, xt, style=torch.tensor([0, 2, 2])).input_mask.sum().backward()
    g = s.mask_generator.style_film.weight.grad
    assert g[0].abs().sum() > 0 and g[2].abs().sum() > 0 and g[1].abs().sum() == 0


def test_bad_style_labels_are_refused():
    s = build_strategy("creative-agent", {"hidden_dim": 16, "num_heads": 2, "num_styles": 2},
                       spec=EncodingSpec(dim=16))
    xi, xt = pair()
    with pytest.raises(ValueError, match=r"style labels must be in \[0, 2\)"):
        s(xi, xt, style=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="2 style labels for a batch of 3"):
        s(xi, xt, style=torch.tensor([0, 1]))
    plain = build_strategy("creative-agent", {"hidden_dim": 16, "num_heads": 2}, spec=EncodingSpec(dim=16))
    with pytest.raises(ValueError, match="without style conditioning"):
        plain(xi, xt, style=torch.tensor([0, 0, 0]))


# -- the trainer and arrange --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def styled_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("styled")
    r = train(tiny(d, "--style-labels", "--train-pairs", "8", "--batch-size", "4", "--epochs", "2",
                   "--snapshot-every", "2", strategy=AGENT))
    return r


def test_training_with_style_labels_saves_and_loads(styled_run):
    ck = load_checkpoint(styled_run.last_checkpoint)
    assert ck["styles"] == list(GROOVES)
    assert ck["config"]["strategy_options"]["num_styles"] == 4
    film = ck["model"]["strategy.mask_generator.style_film.weight"]
    assert film.shape == (4, 32) and film.abs().sum() > 0  # the style table trained
    loaded = load_model(styled_run.last_checkpoint)
    assert loaded.styles == list(GROOVES) and loaded.style_index("halftime") == 2
    assert loaded.model.strategy.config.num_styles == 4
    with pytest.raises(ConfigError, match="its styles: four-on-floor, backbeat"):
        loaded.style_index("jazz")


def test_snapshots_name_each_pairs_style(styled_run):
    import json

    data = json.loads((Path(styled_run.run_dir) / "snapshots" / "epoch_0002.json").read_text())
    assert data["per_pair"] and all(p["label"] in GROOVES for p in data["per_pair"])


def test_mask_picture_of_a_style(styled_run, tmp_path):
    pytest.importorskip("matplotlib")
    from maskkit.viz import plot_masks

    a = torch.from_numpy(_tone(1.0, 8000, 220, 1))
    b = torch.from_numpy(_tone(1.0, 8000, 330, 2))
    ck = styled_run.last_checkpoint
    pics = {s: plot_masks(ck, a, b, tmp_path / f"{s}.png", style=s, size=(400, 300)) for s in GROOVES[:2]}
    assert all(p.path.is_file() for p in pics.values())
    with pytest.raises(ConfigError, match="unknown style 'jazz' for .*; its styles: four-on-floor"):
        plot_masks(ck, a, b, tmp_path / "x.png", style="jazz", size=(400, 300))
    with pytest.raises(ConfigError, match="does not support style conditioning"):
        plot_masks("temporal", a, b, tmp_path / "x.png", style=0, size=(400, 300))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_two_processes_with_style_labels(tmp_path):
    r = train(tiny(tmp_path, "--style-labels", "--train-pairs", "8", "--batch-size", "2", "--max-steps", "2",
                   "--world-size", "2", strategy=AGENT))
    assert r.world_size == 2 and r.steps == 2
    assert r.rank_param_checksums[0] == r.rank_param_checksums[1]
    assert load_checkpoint(r.last_checkpoint)["styles"] == list(GROOVES)


def test_resume_with_style_labels(styled_run, tmp_path):
    r = train(tiny(Path(styled_run.run_dir), "--style-labels", "--train-pairs", "8", "--batch-size", "4",
                   "--epochs", "3", "--resume", "auto", strategy=AGENT))
    assert r.steps == 6 and r.epochs_completed == 3


def test_a_strategy_without_style_support_is_named(tmp_path):
    with pytest.raises(ConfigError, match="strategy 'temporal' does not support style conditioning; "
                                          "strategies that do: .*creative-agent"):
        train(tiny(tmp_path, "--style-labels", "--train-pairs", "8", "--batch-size", "4"))


def test_arrange_with_a_style(styled_run, tmp_path):
    from maskkit.arrange import arrange

    sr = 8000
    a = torch.from_numpy(_tone(1.0, sr, 220, 1)).view(1, -1)
    b = torch.from_numpy(_tone(1.0, sr, 330, 2)).view(1, -1)
    ck = styled_run.last_checkpoint
    outs = {s: arrange(a, b, checkpoint=ck, style=s) for s in ("four-on-floor", "breakbeat")}
    assert outs["breakbeat"].style == "breakbeat"
    assert not torch.equal(outs["four-on-floor"].audio, outs["breakbeat"].audio)
    plain = arrange(a, b, checkpoint=ck)
    assert plain.style is None
    with pytest.raises(ConfigError, match="unknown style 'jazz'"):
        arrange(a, b, checkpoint=ck, style="jazz")
    # the command line
    from click.testing import CliRunner

    from maskkit_cli.main import cli

    ia, ib = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(ia, a[0].numpy(), sr)
    sf.write(ib, b[0].numpy(), sr)
    res = CliRunner().invoke(cli, ["arrange", "-c", ck, str(ia), str(ib), "-o", str(tmp_path / "o.wav"),
                                   "--style", "halftime", "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.wav").is_file()
    res = CliRunner().invoke(cli, ["arrange", "-c", ck, str(ia), str(ib), "-o", str(tmp_path / "x.wav"),
                                   "--style", "polka"])
    assert res.exit_code != 0 and "its styles: four-on-floor" in res.output
    assert not (tmp_path / "x.wav").exists()

"""Plugin hygiene with real installed distributions: broken plugins, an incompatible API version,
duplicate names, the allow/deny variables, ``maskkit plugins``, every hook exercised, and a
``maskkit --help`` that imports no torch.

The plugins are tiny distributions under ``tests/fixtures/plugin_dists/`` (see its README),
pip-installed once per module with ``--target`` into a temporary folder that is put on
``sys.path`` (in-process tests) or ``PYTHONPATH`` (subprocess tests), so maskkit reads real
entry-point metadata, as for a plugin installed from PyPI.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from maskkit import PLUGIN_API_VERSION, PluginError, hookimpl, hookspecs
from maskkit.plugins import PluginInfo, PluginManager
from maskkit_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "plugin_dists"
DOCS = ROOT / "docs" / "plugins.md"

# the fixtures that go together; "fixed" (the shadow) needs a folder of its own
MAIN = ["maskkit-fixture-hello", "maskkit-fixture-broken", "maskkit-fixture-future", "maskkit-fixture-dup",
        "maskkit-fixture-hookfail"]
SHADOW = ["maskkit-fixture-shadow"]
FIXTURE_PLUGINS = ["fixture-hello", "fixture-broken", "fixture-future-api", "fixture-dup-temporal",
                   "fixture-hookfail"]
BUILTIN_PLUGINS = ["fixed", "creative-agent", "codecs"]
NOT_DUP = "fixture-dup-temporal"  # disabled unless a test is about it: it makes 'temporal' ambiguous


def _pip_target(target: Path, src: Path, dists: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(target), *(str(src / d) for d in dists)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"main": dir, "shadow": dir}``: the fixture distributions, installed."""
    base = tmp_path_factory.mktemp("plugin_sites")
    src = base / "src"
    shutil.copytree(FIXTURES, src)  # build from a copy: no build/ or *.egg-info in the repository
    out = {"main": base / "main", "shadow": base / "shadow"}
    _pip_target(out["main"], src, MAIN)
    _pip_target(out["shadow"], src, SHADOW)
    return out


@pytest.fixture
def use(sites, fresh_plugins, monkeypatch):
    """``use("main", MASKKIT_X="...")``: put installed fixtures on sys.path, set variables."""
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("MASKKIT_LOAD_PLUGINS", "MASKKIT_DISABLE_PLUGINS", "MASKKIT_NO_PLUGINS",
                "MASKKIT_STRICT_PLUGINS"):
        # set, then delete: monkeypatch records the original state and restores it even when the CLI's
        # --plugins / --no-plugins callbacks write os.environ directly
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)

    def _use(*which: str, **env: str):
        for w in which:
            monkeypatch.syspath_prepend(str(sites[w]))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return fresh_plugins

    yield _use
    for name in [m for m in sys.modules if m.startswith("maskkit_fixture_")]:
        del sys.modules[name]


def _load(plugins_mod) -> tuple[PluginManager, list[str]]:
    """Load a fresh manager; return it and the maskkit warnings it gave."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        mgr = plugins_mod.get_manager()
        mgr.strategies()
        mgr.codecs()
    return mgr, [str(w.message) for w in rec if str(w.message).startswith("maskkit:")]


def _invoke(*args: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _subprocess_env(sites: dict[str, Path], *which: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKKIT_")}
    paths = [str(sites[w]) for w in which] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update(PYTHONPATH=os.pathsep.join(paths), COLUMNS="200", OMP_NUM_THREADS="1", **extra)
    return env


# -- broken plugins and the API version ---------------------------------------------------------
def test_broken_and_incompatible_plugins_are_named_and_skipped(use):
    mgr, warned = _load(use("main", MASKKIT_DISABLE_PLUGINS=NOT_DUP))
    broken = [w for w in warned if "'fixture-broken'" in w]
    future = [w for w in warned if "'fixture-future-api'" in w]
    assert len(broken) == 1 and "maskkit-fixture-broken 0.3.1" in broken[0]
    assert "RuntimeError: maskkit-fixture-broken fails at import on purpose" in broken[0]
    assert len(future) == 1 and "maskkit-fixture-future" in future[0]
    assert f"targets maskkit plugin API 99, but this maskkit implements API {PLUGIN_API_VERSION}" in future[0]
    hookfail = [w for w in warned if "'fixture-hookfail'" in w]
    assert len(hookfail) == 1 and "register_strategies" in hookfail[0]
    assert len(warned) == 3, warned
    # everything else works
    strategies = mgr.strategies()
    assert {"temporal", "frequency", "fixture-half"} <= set(strategies)
    assert "fixture-future" not in strategies
    assert "fixture-frames" in mgr.codecs()
    from maskkit import build_strategy

    assert build_strategy("temporal").name == "temporal"
    st = {n: p.status for n, p in mgr.plugins.items()}
    assert st["fixture-broken"] == st["fixture-future-api"] == st["fixture-hookfail"] == "failed"
    assert st["fixture-hello"] == st["fixed"] == "loaded"


def test_api_version_is_checked_before_registration():
    info = PluginInfo(name="p", dist="some-dist", version="1.2", module="m")
    PluginManager._check_api(types.SimpleNamespace(MASKKIT_PLUGIN_API=PLUGIN_API_VERSION), info)
    assert info.api_version == PLUGIN_API_VERSION
    PluginManager._check_api(types.SimpleNamespace(), info)  # undeclared: accepted, recorded as None
    assert info.api_version is None
    bad = PLUGIN_API_VERSION + 1
    with pytest.raises(PluginError, match=rf"API {bad}.*implements API {PLUGIN_API_VERSION}: upgrade "
                                          rf"maskkit, or install a version of some-dist"):
        PluginManager._check_api(types.SimpleNamespace(MASKKIT_PLUGIN_API=bad), info)
    assert info.api_version == bad  # what it declared, for `maskkit plugins` (was None once refused)
    for bad in ("1", 1.5, True, 0, -1):  # not "API '1' ... implements API 1": it says what is wrong
        with pytest.raises(PluginError, match=rf"must be an integer >= 1.*API {PLUGIN_API_VERSION}.*got "
                                              rf"{re.escape(repr(bad))}"):
            PluginManager._check_api(types.SimpleNamespace(MASKKIT_PLUGIN_API=bad), info)


def test_cli_keeps_working_with_broken_plugins(sites):
    """The issue's check, through the real ``maskkit`` process: warnings naming them, exit 0."""
    env = _subprocess_env(sites, "main", MASKKIT_DISABLE_PLUGINS=NOT_DUP)
    proc = subprocess.run([sys.executable, "-m", "maskkit_cli.main", "strategies"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "│ temporal " in proc.stdout and "│ fixture-half " in proc.stdout
    # one line per warning (maskkit_cli sets a one-line warning format), no source excerpt
    warned = [line for line in proc.stderr.splitlines() if line.startswith("maskkit: ")]
    assert not any("UserWarning" in line or "warnings.warn" in line for line in proc.stderr.splitlines())
    assert any("plugin 'fixture-broken' from maskkit-fixture-broken 0.3.1 failed to load" in w
               for w in warned)
    assert any("plugin 'fixture-future-api' from maskkit-fixture-future 0.3.1 failed to load" in w
               and "API 99" in w for w in warned)
    # the table's footer points at 'maskkit plugins'
    assert "fixture-broken (maskkit-fixture-broken)" in proc.stdout


# -- maskkit plugins -----------------------------------------------------------------------------
def test_plugins_command_lists_distributions_registrations_and_failures(use):
    use("main", MASKKIT_DISABLE_PLUGINS=NOT_DUP)
    res = _invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    by = {p["name"]: p for p in json.loads(res.stdout)}
    assert set(by) == set(FIXTURE_PLUGINS + BUILTIN_PLUGINS)
    hello = by["fixture-hello"]
    assert (hello["dist"], hello["version"], hello["status"], hello["api_version"]) == (
        "maskkit-fixture-hello", "0.3.1", "loaded", 1)
    assert hello["registers"] == {"strategy": ["fixture-half"], "codec": ["fixture-frames"],
                                  "command": ["fixture-hello"]}
    assert by["fixed"]["dist"] == "maskkit"
    assert {"temporal", "none"} <= set(by["fixed"]["registers"]["strategy"])
    assert "stft" in by["codecs"]["registers"]["codec"]
    assert by["fixture-broken"]["status"] == "failed"
    assert by["fixture-broken"]["error"] == "RuntimeError: maskkit-fixture-broken fails at import on purpose"
    assert "API 99" in by["fixture-future-api"]["error"]
    assert by[NOT_DUP]["status"] == "disabled"
    assert "traceback" not in hello

    table = _invoke("plugins").stdout
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.startswith("│")}
    assert "maskkit-fixture-hello" in rows["fixture-hello"] and "0.3.1" in rows["fixture-hello"]
    assert "strategy: fixture-half; codec: fixture-frames; command: fixture-hello" in " ".join(
        rows["fixture-hello"].split())
    assert "failed" in rows["fixture-broken"] and "RuntimeError" in rows["fixture-broken"]
    assert "disabled" in rows[NOT_DUP]
    with_tb = _invoke("plugins", "--traceback").stdout
    assert "maskkit_fixture_broken" in with_tb and "__init__.py" in with_tb and "Traceback" in with_tb


# -- duplicate names -----------------------------------------------------------------------------
def test_duplicate_strategy_name_skips_the_later_plugin_naming_both_distributions(use):
    plugins = use("main")
    mgr, warned = _load(plugins)
    msg = " ".join(w for w in warned if "two plugins register" in w)
    assert "two plugins register the strategy 'temporal'" in msg
    assert "from maskkit 0." in msg and "from maskkit-fixture-dup 0.3.1" in msg
    assert f"MASKKIT_DISABLE_PLUGINS={NOT_DUP}" in msg  # the hint never disables maskkit's own
    # maskkit's own 'temporal' stays, the claimant is skipped, and every other plugin works
    reg = mgr.strategies()
    assert reg["temporal"].dist == "maskkit" and "fixture-half" in reg
    assert mgr.plugins[NOT_DUP].status == "failed" and "'temporal'" in mgr.plugins[NOT_DUP].error
    plugins.reset_manager()
    res = _invoke("strategies")
    assert res.exit_code == 0 and "│ temporal " in res.stdout, res.output
    plugins.reset_manager()
    res = _invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    by = {p["name"]: p for p in json.loads(res.stdout)}
    assert by[NOT_DUP]["status"] == "failed" and by["fixture-hello"]["status"] == "loaded"
    assert by["fixture-hello"]["registers"]["strategy"]  # plugins after the clash still list theirs
    # strict mode makes it an error (the broken fixtures left out, or they would raise first)
    plugins.reset_manager()
    os.environ.update(MASKKIT_STRICT_PLUGINS="1", MASKKIT_LOAD_PLUGINS=f"fixed,fixture-hello,{NOT_DUP}")
    try:
        with pytest.raises(PluginError, match="two plugins register the strategy 'temporal'"):
            plugins.get_manager().strategies()
    finally:
        del os.environ["MASKKIT_STRICT_PLUGINS"], os.environ["MASKKIT_LOAD_PLUGINS"]


def test_entry_point_with_a_builtin_name_cannot_shadow_it(use):
    mgr, warned = _load(use("shadow"))
    assert any("two plugins are named 'fixed'" in w and "maskkit-fixture-shadow" in w
               and "from maskkit 0." in w for w in warned), warned
    assert mgr.plugins["fixed"].dist == "maskkit" and mgr.plugins["fixed"].status == "loaded"
    assert mgr.plugins["fixed@maskkit-fixture-shadow"].status == "failed"
    assert "temporal" in mgr.strategies() and "fixture-shadow" not in mgr.strategies()
    # the filters share the name, so only uninstalling helps: the message says which to uninstall
    assert any("pip uninstall maskkit-fixture-shadow" in w for w in warned), warned


@pytest.mark.parametrize("env", [{"MASKKIT_NO_PLUGINS": "1"}, {"MASKKIT_LOAD_PLUGINS": "codecs"},
                                 {"MASKKIT_LOAD_PLUGINS": ""}])
def test_a_name_clash_of_a_plugin_left_out_is_not_reported(use, env):
    """--no-plugins / an allow-list decide first: a plugin they leave out cannot clash."""
    mgr, warned = _load(use("shadow", **env))
    assert not [w for w in warned if "two plugins" in w], warned
    assert mgr.plugins["fixed@maskkit-fixture-shadow"].status == "disabled"


def test_strict_mode_makes_a_misspelt_plugin_filter_an_error(use):
    plugins = use("main", MASKKIT_STRICT_PLUGINS="1", MASKKIT_LOAD_PLUGINS="fixed,fixture-helo")
    with pytest.raises(PluginError, match="no installed plugin is named 'fixture-helo'.*fixture-hello"):
        plugins.get_manager()
    # on the command line, --help and a bare `maskkit` included: one line, no traceback
    for args in (["--help"], [], ["strategies"]):
        plugins.reset_manager()
        cli._plugins_added = False  # as in a new process
        res = _invoke(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "no installed plugin is named 'fixture-helo'" in res.output and res.exception is not None
        assert not isinstance(res.exception, PluginError), (args, res.exception)  # handled, not raised


def test_registry_rebuild_does_not_list_names_twice(fresh_plugins):
    mgr = fresh_plugins.get_manager()
    first = list(mgr.strategies())
    fresh_plugins.register_plugin(types.SimpleNamespace(), "nothing")  # forces a rebuild
    assert list(mgr.strategies()) == first
    assert sorted(mgr.plugins["fixed"].registers["strategy"]) == sorted(
        n for n in first if mgr.strategies()[n].plugin == "fixed")


# -- choosing what loads -------------------------------------------------------------------------
def test_allow_list_loads_only_the_named_plugins_and_imports_nothing_else(use):
    mgr, warned = _load(use("main", MASKKIT_LOAD_PLUGINS="fixed, fixture-hello"))
    assert warned == []
    assert {n for n, p in mgr.plugins.items() if p.status == "loaded"} == {"fixed", "fixture-hello"}
    assert {p.status for n, p in mgr.plugins.items() if n not in ("fixed", "fixture-hello")} == {"disabled"}
    assert "maskkit_fixture_future" not in sys.modules  # filtered before import
    assert "maskkit_fixture_dup" not in sys.modules
    assert set(mgr.strategies()) >= {"temporal", "fixture-half"}
    assert "stft" not in mgr.codecs()


def test_empty_allow_list_loads_nothing(use):
    mgr, warned = _load(use("main", MASKKIT_LOAD_PLUGINS=""))
    assert warned == [] and mgr.strategies() == {} and mgr.codecs() == {}
    assert {p.status for p in mgr.plugins.values()} == {"disabled"}


def test_deny_list_and_no_plugins(use):
    deny = "fixture-broken,fixture-future-api,fixture-hookfail," + NOT_DUP
    mgr, warned = _load(use("main", MASKKIT_DISABLE_PLUGINS=deny))
    assert warned == []
    assert "fixture-half" in mgr.strategies()
    plugins = use(MASKKIT_NO_PLUGINS="1")
    plugins.reset_manager()
    mgr, warned = _load(plugins)
    assert warned == []
    assert {n for n, p in mgr.plugins.items() if p.status == "loaded"} == set(BUILTIN_PLUGINS)
    assert "fixture-half" not in mgr.strategies() and "temporal" in mgr.strategies()


def test_cli_options_choose_plugins(use):
    use("main")
    res = _invoke("--no-plugins", "plugins", "--json")
    loaded = {p["name"] for p in json.loads(res.stdout) if p["status"] == "loaded"}
    assert res.exit_code == 0 and loaded == set(BUILTIN_PLUGINS)
    use().reset_manager()
    os.environ.pop("MASKKIT_NO_PLUGINS", None)
    res = _invoke("--plugins", "fixed,fixture-hello", "strategies")
    assert res.exit_code == 0
    assert "fixture-half" in res.stdout and "temporal" in res.stdout


def test_strict_mode_raises_on_the_first_failure(use):
    plugins = use("main", MASKKIT_STRICT_PLUGINS="1", MASKKIT_LOAD_PLUGINS="fixed,fixture-broken")
    with pytest.raises(PluginError, match="plugin 'fixture-broken' from maskkit-fixture-broken 0.3.1 failed "
                                          "to load: RuntimeError"):
        plugins.get_manager()
    plugins.reset_manager()
    use(MASKKIT_LOAD_PLUGINS="fixed,fixture-future-api")
    with pytest.raises(PluginError, match="fixture-future-api.*plugin API 99"):
        plugins.get_manager()
    plugins.reset_manager()
    use(MASKKIT_LOAD_PLUGINS="fixed,fixture-hookfail")
    with pytest.raises(PluginError, match="fixture-hookfail.*failed in register_strategies"):
        plugins.get_manager().strategies()
    # `maskkit plugins`, the diagnostic, still lists them all, then fails as strict mode asks
    plugins.reset_manager()
    use(MASKKIT_LOAD_PLUGINS="fixed,fixture-broken,fixture-hookfail")
    res = _invoke("plugins")
    assert res.exit_code == 2 and "fixed" in res.stdout and "fixture-hookfail" in res.stdout, res.output
    out = " ".join(res.output.split())
    assert "plugin 'fixture-broken' from maskkit-fixture-broken 0.3.1 failed to load" in out
    assert "fixture-hookfail" in out.split("Error:", 1)[1]  # both named in the error
    assert os.environ["MASKKIT_STRICT_PLUGINS"] == "1"  # (set back after the listing)
    with pytest.raises(PluginError, match="fixture-broken"):  # and the process is strict again
        plugins.get_manager()
    # what else strict mode refuses fails the diagnostic too: a misspelt filter name
    plugins.reset_manager()
    use(MASKKIT_LOAD_PLUGINS="fixed,fixd")
    res = _invoke("plugins")
    assert res.exit_code == 2 and "no installed plugin is named 'fixd'" in res.output, res.output
    # a notebook's runtime plugin is listed under strict mode too, and kept (the listing once reset
    # the process's manager)
    plugins.reset_manager()
    use(MASKKIT_LOAD_PLUGINS="fixed")

    class Runtime:
        @hookimpl
        def register_strategies(self, register):
            pass

    plugins.register_plugin(Runtime(), "nb-plugin")
    res = _invoke("plugins", "--json")
    assert res.exit_code == 0 and "nb-plugin" in {p["name"] for p in json.loads(res.stdout)}, res.output
    assert "nb-plugin" in plugins.get_manager().plugins


# -- each hook, through a real entry point (test_hook_<name>: see the last test) ----------------------
def test_hook_register_strategies(use):
    mgr, _ = _load(use("main", MASKKIT_LOAD_PLUGINS="fixed,fixture-hello"))
    entry = mgr.strategies()["fixture-half"]
    assert (entry.plugin, entry.dist, entry.version) == ("fixture-hello", "maskkit-fixture-hello", "0.3.1")
    from maskkit.testing import check_strategy

    check_strategy(entry.cls)  # a plugin's strategy, found by entry point, passes the kit

    bad = types.SimpleNamespace(register_strategies=hookimpl(lambda register: register(object)))
    use().register_plugin(bad, "bad-runtime")
    with pytest.warns(UserWarning, match="plugin 'bad-runtime'.*registered <class 'object'>.*MaskStrategy"):
        reg = use().get_manager().strategies()
    assert "fixture-half" in reg and "temporal" in reg  # the others keep working


def test_hook_register_codecs(use):
    import torch

    mgr, _ = _load(use("main", MASKKIT_LOAD_PLUGINS="codecs,fixture-hello"))
    entry = mgr.codecs()["fixture-frames"]
    assert entry.dist == "maskkit-fixture-hello"
    from maskkit import build_codec

    codec = build_codec("fixture-frames")
    audio = torch.randn(2, 1, 64)
    enc = codec.encode(audio)
    assert enc.shape == (2, codec.spec.dim, codec.num_frames(64))
    assert torch.equal(codec.decode(enc, length=64), audio)


def test_hook_register_commands(use, sites):
    plugins = use("main", MASKKIT_LOAD_PLUGINS="fixture-hello")
    group = click.Group("probe")
    plugins.get_manager().add_commands(group)
    assert list(group.commands) == ["fixture-hello"]
    res = CliRunner().invoke(group, ["fixture-hello", "Ada"])
    assert res.exit_code == 0 and res.output == "hello Ada from maskkit-fixture-hello\n"
    # and through the real command line
    env = _subprocess_env(sites, "main", MASKKIT_LOAD_PLUGINS="fixture-hello")
    proc = subprocess.run([sys.executable, "-m", "maskkit_cli.main", "fixture-hello", "Bob"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "hello Bob from maskkit-fixture-hello\n", proc.stderr


def test_plugin_commands_are_listed_and_a_builtin_name_is_refused(use):
    plugins = use("main", MASKKIT_LOAD_PLUGINS="fixture-hello")
    from maskkit_cli.main import MaskkitGroup

    group = MaskkitGroup("probe")
    plugins.get_manager().add_commands(group)
    assert plugins.get_manager().plugins["fixture-hello"].registers["command"] == ["fixture-hello"]
    # a plugin command named like a built-in would be shadowed by it: refused, with a warning
    with pytest.warns(UserWarning, match=r"command 'train' from .*test_plugin_hygiene.* built-in"):
        group.add_command(click.Command("train", callback=_noop))
    assert "train" not in group.commands
    # from a plugin's hook: named by plugin and distribution (was its module); strict: an error

    class Clash:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(click.Command("train", callback=_noop))

    plugins.register_plugin(Clash(), "clash")
    with pytest.warns(UserWarning, match=r"command 'train' from runtime plugin 'clash' has the name"):
        plugins.get_manager().add_commands(MaskkitGroup("probe"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MASKKIT_STRICT_PLUGINS", "1")
        with pytest.raises(PluginError, match=r"command 'train' from runtime plugin 'clash' has the name"):
            plugins.get_manager().add_commands(MaskkitGroup("probe"))
    res = _invoke("plugins", "--json")
    by = {p["name"]: p for p in json.loads(res.stdout)}
    assert by["fixture-hello"]["registers"].get("command") == ["fixture-hello"]


def _noop() -> None:
    pass


# -- a fast --help ---------------------------------------------------------------------------------
def test_help_imports_no_torch_and_no_plugin_internals(sites, tmp_path):
    # sys.modules after the real CLI's --help (python -X importtime would miss the modules that
    # importlib.import_module and entry points load)
    probe = ("import json, sys\n"
             "from maskkit_cli.main import cli\n"
             "try:\n    cli(['--help'], prog_name='maskkit')\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n")
    out = tmp_path / "modules.json"
    env = _subprocess_env(sites, "main", MASKKIT_DISABLE_PLUGINS=NOT_DUP)
    proc = subprocess.run([sys.executable, "-c", probe, str(out)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = set(json.loads(out.read_text()))
    assert {"maskkit_cli.main", "maskkit_fixture_hello", "maskkit_fixed"} <= imported  # the probe works
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "torchaudio"))
    assert heavy == [], f"'maskkit --help' imports {heavy[:10]}"
    internals = {"maskkit_fixture_hello.impl", "maskkit_fixed.strategies", "maskkit_codecs.stft",
                 "maskkit.strategy"} & imported
    assert not internals, f"'maskkit --help' imports {sorted(internals)}"
    assert "fixture-hello" in proc.stdout  # plugin commands are listed
    assert "fixture-broken" in proc.stderr  # and a broken plugin is still reported


# -- every hook documented and tested (datasette's test_plugin_hooks_have_tests) ----------------------
def _hook_specs() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(f) for name, f in vars(hookspecs).items()
            if callable(f) and hasattr(f, f"{hookspecs.PROJECT}_spec")}


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in Path(__file__).resolve().parent.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return names


def test_plugin_hooks_are_documented_and_tested():
    specs = _hook_specs()
    assert set(specs) >= {"register_strategies", "register_codecs", "register_commands"}
    docs = DOCS.read_text()
    tests = _test_function_names()
    hello = (FIXTURES / "maskkit-fixture-hello" / "maskkit_fixture_hello" / "__init__.py").read_text()
    problems = []
    for name, sig in specs.items():
        if not inspect.getdoc(getattr(hookspecs, name)):
            problems.append(f"hook {name} has no docstring in maskkit/hookspecs.py")
        heading = f"### `{name}({', '.join(sig.parameters)})`"
        if heading not in docs:
            problems.append(f"hook {name} is not documented in docs/plugins.md (expected {heading})")
        if not any(t.startswith(f"test_hook_{name}") for t in tests):
            problems.append(f"hook {name} has no test named test_hook_{name} in tests/")
        if f"def {name}(" not in hello:
            problems.append(f"hook {name} is not implemented by the maskkit-fixture-hello fixture plugin")
    assert not problems, "\n".join(problems)


def test_the_readme_plugin_works_and_keeps_maskkit_help_free_of_torch(tmp_path, fresh_plugins):
    """README's "Write your own strategy", pasted as is: its hooks module imports without torch
    (``maskkit --help`` loads it), and its strategy registers and passes the conformance kit."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Write your own strategy"):]
    pkg = tmp_path / "my_masks"
    pkg.mkdir()
    for block in re.findall(r"```python\n(# my_masks/(\w+)\.py.*?)```", section, re.S):
        (pkg / f"{block[1]}.py").write_text(block[0])
    assert {f.name for f in pkg.iterdir()} == {"__init__.py", "strategy.py"}
    probe = ("import sys; import my_masks; assert my_masks.MASKKIT_PLUGIN_API == 1; "
             "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        import my_masks

        fresh_plugins.register_plugin(my_masks, "halves")
        entry = fresh_plugins.get_strategy_entry("halves")
        from maskkit.testing import check_strategy

        check_strategy(entry.cls)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "my_masks" or m.startswith("my_masks.")]:
            del sys.modules[name]


def test_the_wheel_ships_the_conformance_kit_the_plugins_and_the_typing_marker(tmp_path):
    """What a plugin author gets from `pip install maskkit`: the conformance kit (fsspec once left
    its test suite out of the wheel), the built-in plugins with their entry points, and
    ``py.typed``, so that their type checker reads maskkit's hints. Tests stay out."""
    import configparser
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                "tests", "docs", "benchmarks", "examples"))
    # (pip fetches the build backend the pyproject asks for; without the package index: skipped)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "out"),
                        str(src)], timeout=300, capture_output=True, text=True)
    offline = r"No matching distribution|NewConnectionError|Could not find a version"
    if p.returncode != 0 and re.search(offline, p.stderr):
        pytest.skip(f"pip cannot fetch the build backend here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    (wheel,) = (tmp_path / "out").glob("maskkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("maskkit/py.typed", "maskkit/testing.py", "maskkit/hookspecs.py", "maskkit_cli/main.py",
                   "maskkit_fixed/__init__.py", "maskkit_creative_agent/agent.py", "maskkit_codecs/stft.py"):
        assert module in names, module
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    eps = configparser.ConfigParser()
    eps.read_string(zipfile.ZipFile(wheel).read(ep_file).decode())
    assert dict(eps["maskkit"]) == {"fixed": "maskkit_fixed", "creative-agent": "maskkit_creative_agent",
                                    "codecs": "maskkit_codecs"}
    assert eps["console_scripts"]["maskkit"].startswith("maskkit_cli")

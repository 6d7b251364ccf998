"""A real third-party plugin: pip-install ``examples/maskkit-hpss``, use it from every command, uninstall.

The distribution is installed with pip, from a copy of its folder (so no build files land in
the repository), into a virtual environment layered on this test environment: the venv's
``site-packages`` comes first, then this environment's (maskkit, torch, ...) through a
``.pth`` file. It is a real install (wheel built by setuptools, ``*.dist-info`` with
``entry_points.txt``, ``pip uninstall``), yet it never touches the environment the other
tests run in, and a crash in the middle cannot leave ``hpss`` installed there.

Install and uninstall happen once per module (a module-scoped fixture); the tests run in
order: listed, benched, trained, the plugin's own tests, then uninstalled.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "maskkit-hpss"
DIST = "maskkit-hpss"


def _run(py: Path, *args: str, cwd: Path, timeout: float = 120, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                **(env or {})}
    for var in ("MASKKIT_LOAD_PLUGINS", "MASKKIT_DISABLE_PLUGINS", "MASKKIT_NO_PLUGINS",
                "MASKKIT_STRICT_PLUGINS"):
        full_env.pop(var, None)
    proc = subprocess.run([str(py), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited with {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc


def _maskkit(env: dict[str, Path], *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return _run(env["python"], "-m", "maskkit_cli.main", *args, cwd=env["work"], **kw)  # type: ignore[arg-type]


def _layered_venv(where: Path) -> Path:
    """A venv whose python sees its own site-packages first, then this environment's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    py = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.check_output(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    parents = [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    if site.ENABLE_USER_SITE:
        parents.append(site.getusersitepackages())
    lines = [f"import site; site.addsitedir({d!r})\n" for d in dict.fromkeys(parents) if Path(d).is_dir()]
    (purelib / "_maskkit_test_parent_env.pth").write_text("".join(lines))
    return py


@pytest.fixture(scope="module")
def hpss_env(tmp_path_factory: pytest.TempPathFactory):
    """The layered venv with maskkit-hpss pip-installed; uninstalled (and checked) at the end."""
    base = tmp_path_factory.mktemp("third_party")
    src = base / "maskkit-hpss"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build",
                                                                ".pytest_cache", ".benchmarks"))
    py = _layered_venv(base / "venv")
    work = base / "work"
    work.mkdir()
    env = {"python": py, "work": work, "src": src, "uninstalled": False}
    _run(py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", str(src), cwd=work, timeout=180)
    try:
        env["plugins"] = _plugins_json(env)  # as installed; each maskkit process costs seconds
        yield env
    finally:
        if not env["uninstalled"]:
            _run(py, "-m", "pip", "uninstall", "-y", "-q", DIST, cwd=work, check=False)


def _plugins_json(env: dict[str, object]) -> list[dict[str, object]]:
    """``maskkit plugins --json``: one dict per plugin (name, dist, version, status, registers...)."""
    return json.loads(_maskkit(env, "plugins", "--json").stdout)  # type: ignore[arg-type]


def _by_strategy(plugins: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {name: p for p in plugins for name in p["registers"].get("strategy", [])}  # type: ignore[union-attr]


def _need_stft(env: dict[str, object]) -> None:
    if not any("stft" in p["registers"].get("codec", []) for p in env["plugins"]):  # type: ignore[union-attr]
        pytest.skip("the 'stft' codec (plugin maskkit_codecs) is not installed; hpss needs its channel "
                    "frequencies")


def test_installed_with_real_metadata(hpss_env):
    probe = ("import importlib.metadata as md, maskkit_hpss; d = md.distribution('maskkit-hpss'); "
             "print(d.version); print([(e.group, e.name, e.value) for e in d.entry_points]); "
             "print(maskkit_hpss.__file__)")
    version, eps, location = _run(hpss_env["python"], "-c", probe, cwd=hpss_env["work"]).stdout.splitlines()
    assert version == "0.1.0"
    assert eps == str([("maskkit", "hpss", "maskkit_hpss")])
    assert str(hpss_env["src"]) not in location, "imported from the source folder, not from the install"
    assert str(hpss_env["python"].parents[1]) in location


def test_strategies_lists_hpss_from_its_distribution(hpss_env):
    out = _maskkit(hpss_env, "strategies").stdout
    rows = [line for line in out.splitlines() if "│ hpss " in line]
    assert rows, out
    assert DIST in rows[0] and "0.1.0" in rows[0]
    assert "│ temporal " in out
    info = _by_strategy(hpss_env["plugins"])["hpss"]
    assert (info["name"], info["dist"], info["version"], info["status"]) == ("hpss", DIST, "0.1.0", "loaded")
    assert info["api_version"] == 1


def test_bench_runs_hpss_beside_temporal(hpss_env):
    _need_stft(hpss_env)
    out_json = hpss_env["work"] / "bench.json"
    proc = _maskkit(hpss_env, "bench", "--strategies", "hpss,temporal", "--batch-size", "2",
                    "--segment-seconds", "1", "--warmup", "0", "--repeats", "1", "--no-progress",
                    "--json", str(out_json), timeout=180)
    assert "hpss" in proc.stdout and "temporal" in proc.stdout
    text = out_json.read_text()
    assert '"hpss"' in text and '"temporal"' in text


def test_train_runs_a_few_steps_with_hpss(hpss_env):
    _need_stft(hpss_env)
    run = hpss_env["work"] / "run"
    _maskkit(hpss_env, "train", "--strategy", "hpss", "--max-steps", "2", "--batch-size", "2",
             "--segment-seconds", "1", "--train-pairs", "4", "--val-pairs", "2", "--num-workers", "0",
             "--d-model", "32", "--nhead", "2", "--num-layers", "1", "--device", "cpu",
             "--checkpoint-dir", str(run), "-q", timeout=240)
    ckpts = sorted(run.glob("*.pt"))
    assert ckpts, f"no checkpoint in {run}: {sorted(p.name for p in run.iterdir())}"
    import torch

    ck = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    assert (ck["strategy"]["name"], ck["strategy"]["dist"]) == ("hpss", DIST)
    assert ck["step"] == 2


def test_the_plugins_own_tests_pass_against_the_install(hpss_env):
    # what a plugin author runs: their tests, using maskkit.testing's conformance kit
    proc = _run(hpss_env["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                str(hpss_env["src"] / "tests"), cwd=hpss_env["src"], timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout
    assert "failed" not in proc.stdout


def test_uninstall_removes_hpss_and_nothing_else(hpss_env):
    before = _by_strategy(hpss_env["plugins"])
    assert "hpss" in before
    _run(hpss_env["python"], "-m", "pip", "uninstall", "-y", "-q", DIST, cwd=hpss_env["work"])
    hpss_env["uninstalled"] = True
    plugins = _plugins_json(hpss_env)
    after = _by_strategy(plugins)
    assert "hpss" not in after
    assert set(after) == set(before) - {"hpss"}
    assert [p["name"] for p in plugins if p["status"] != "loaded"] == []
    out = _maskkit(hpss_env, "strategies")
    assert "│ hpss " not in out.stdout and "│ temporal " in out.stdout
    assert "failed" not in out.stdout + out.stderr

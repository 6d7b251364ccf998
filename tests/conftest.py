"""Shared test settings: few threads (CI has 2 cores); plugin state never leaks between tests."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PLUGIN_VARS = ("MASKKIT_LOAD_PLUGINS", "MASKKIT_DISABLE_PLUGINS", "MASKKIT_NO_PLUGINS",
               "MASKKIT_STRICT_PLUGINS")


@pytest.fixture(autouse=True)
def _isolate_plugin_state():
    """Restore MASKKIT_* variables (the CLI's --plugins/--no-plugins set them directly) and drop a
    plugin manager that a test loaded under other variables or with runtime-registered plugins."""
    before = {v: os.environ.get(v) for v in PLUGIN_VARS}
    yield
    changed = False
    for var, val in before.items():
        if os.environ.get(var) != val:
            changed = True
            if val is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = val
    from maskkit import plugins

    mgr = plugins._manager
    if changed or (mgr is not None and any(p.status in ("disabled", "runtime")
                                           for p in mgr.plugins.values())):
        plugins.reset_manager()


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A fresh plugin manager with the MASKKIT_* variables cleared for the test."""
    from maskkit import plugins

    for var in PLUGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    plugins.reset_manager()
    yield plugins
    plugins.reset_manager()

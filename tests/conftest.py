"""Shared test settings: few threads (CI has 2 cores), fresh plugin manager per test when asked."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A fresh plugin manager; MASKKIT_* variables cleared. Restored after the test."""
    from maskkit import plugins

    for var in ("MASKKIT_LOAD_PLUGINS", "MASKKIT_DISABLE_PLUGINS", "MASKKIT_NO_PLUGINS",
                "MASKKIT_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset_manager()
    yield plugins
    plugins.reset_manager()

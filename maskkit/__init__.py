"""maskkit: learned and rule-based complementary masking of music.

The public API is imported lazily so that ``import maskkit`` (and ``maskkit --help``)
stays fast and does not import torch until a tensor is needed.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .hookspecs import PLUGIN_API_VERSION, hookimpl

_LAZY = {
    "MaskStrategy": "strategy",
    "Masks": "strategy",
    "EncodingSpec": "strategy",
    "NoOptions": "strategy",
    "validate_masks": "strategy",
    "check_encodings": "strategy",
    "Codec": "codec",
    "build_strategy": "plugins",
    "build_codec": "plugins",
    "strategy_names": "plugins",
    "codec_names": "plugins",
    "register_plugin": "plugins",
    "unregister_plugin": "plugins",
    "get_manager": "plugins",
    "MaskkitError": "errors",
    "ConfigError": "errors",
    "PluginError": "errors",
    "AudioError": "errors",
    "CheckpointError": "errors",
    "MaskValidationError": "errors",
    "InputError": "errors",
    "UnknownNameError": "errors",
    "plot_masks": "viz",
}

__all__ = [
    "__version__",
    "PLUGIN_API_VERSION",
    "hookimpl",
    "MaskStrategy",
    "Masks",
    "EncodingSpec",
    "NoOptions",
    "validate_masks",
    "check_encodings",
    "Codec",
    "build_strategy",
    "build_codec",
    "strategy_names",
    "codec_names",
    "register_plugin",
    "unregister_plugin",
    "get_manager",
    "metrics",
    "MaskkitError",
    "ConfigError",
    "PluginError",
    "AudioError",
    "CheckpointError",
    "MaskValidationError",
    "InputError",
    "UnknownNameError",
    "arrange",
    "plot_masks",
]


@functools.cache
def _submodules() -> frozenset[str]:
    """maskkit's public submodules: reachable as attributes after a plain ``import maskkit``
    (``maskkit.train.train``, ``maskkit.plugins.reset_manager()``), imported on first use. The
    module ``maskkit.arrange`` is callable as its function ``arrange(...)``."""
    import pkgutil

    return frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _submodules():
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'maskkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names and the submodules (what tab completion should offer)."""
    return sorted({*__all__, *_submodules()})


if TYPE_CHECKING:  # pragma: no cover
    from .arrange import arrange
    from .codec import Codec
    from .errors import (
        AudioError,
        CheckpointError,
        ConfigError,
        InputError,
        MaskkitError,
        MaskValidationError,
        PluginError,
        UnknownNameError,
    )
    from .plugins import (
        build_codec,
        build_strategy,
        codec_names,
        get_manager,
        register_plugin,
        strategy_names,
        unregister_plugin,
    )
    from .strategy import EncodingSpec, Masks, MaskStrategy, NoOptions, check_encodings, validate_masks
    from .viz import plot_masks

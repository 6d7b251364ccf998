"""maskkit's CreativeAgent plugin: learned attention masks (strategy ``creative-agent``).

Registered through the entry point ``creative-agent`` in maskkit's ``pyproject.toml``, as a
third-party plugin would be. This module stays light (no torch import): the classes load when
a hook runs or when one is first used::

    from maskkit_creative_agent import CreativeAgent          # the seed's API
    agent = CreativeAgent(128, use_discriminator=True)
    masked_input, masked_target, reg_loss = agent.generate_creative_masks(enc_in, enc_tg)

Commands: ``maskkit agent selftest`` and ``maskkit agent inspect CHECKPOINT``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maskkit import hookimpl

MASKKIT_PLUGIN_API = 1

_LAZY = {
    "AttentionMaskGenerator": "agent",
    "StyleDiscriminator": "agent",
    "CreativeAgent": "agent",
    "CreativeAgentStrategy": "strategy",
    "CreativeAgentConfig": "strategy",
}

__all__ = ["AttentionMaskGenerator", "CreativeAgent", "CreativeAgentConfig", "CreativeAgentStrategy",
           "StyleDiscriminator"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_strategies(register):  # type: ignore[no-untyped-def]
    from .strategy import CreativeAgentStrategy

    register(CreativeAgentStrategy)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    from .cli import agent

    cli.add_command(agent)


if TYPE_CHECKING:  # pragma: no cover
    from .agent import AttentionMaskGenerator, CreativeAgent, StyleDiscriminator
    from .strategy import CreativeAgentConfig, CreativeAgentStrategy

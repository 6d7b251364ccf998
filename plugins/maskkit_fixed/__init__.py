"""maskkit's built-in rule-based strategies: temporal, frequency, energy, spectral, hybrid, none.

Registered through the entry point ``fixed`` in maskkit's ``pyproject.toml``, exactly as a
third-party plugin would. The classes are imported only when the hook runs.
"""

from maskkit import hookimpl

MASKKIT_PLUGIN_API = 1


@hookimpl
def register_strategies(register):
    from .strategies import Energy, Frequency, Hybrid, NoMask, Spectral, Temporal

    for cls in (Temporal, Frequency, Energy, Spectral, Hybrid, NoMask):
        register(cls)

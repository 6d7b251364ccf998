"""maskkit-hpss: the ``hpss`` mask strategy, a third-party maskkit plugin.

maskkit loads this module through the entry point ``hpss`` in group ``maskkit`` (see
``pyproject.toml``). It stays light on purpose: torch and the strategy are imported only
when the hook runs, so installing this plugin does not slow down ``maskkit --help``.
"""

from maskkit import hookimpl

__version__ = "0.1.0"

#: The maskkit plugin API this plugin is written for; maskkit refuses it, with a message
#: naming it, if it implements an older API.
MASKKIT_PLUGIN_API = 1


@hookimpl
def register_strategies(register):
    from .strategy import HPSS

    register(HPSS)

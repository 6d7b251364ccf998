"""Hook specifications of maskkit's plugin system (pluggy project ``"maskkit"``).

A plugin is a module (or object) registered under the entry-point group ``maskkit``::

    [project.entry-points.maskkit]
    my-plugin = "my_package"          # the module holding the @hookimpl functions

and implements any of the hooks below with :data:`maskkit.hookimpl`. Every hook takes
a single keyword argument; new hooks and new *optional* arguments may be added in
later versions, never removed (see :data:`PLUGIN_API_VERSION`).

Importing this module must stay cheap: it is imported by ``maskkit --help``.
"""

from __future__ import annotations

import pluggy

PROJECT = "maskkit"

#: The plugin API version this maskkit implements. A plugin may declare the version it
#: targets with a module attribute ``MASKKIT_PLUGIN_API = 1``; a plugin that targets a
#: newer major version than this one is refused with a message naming it.
PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_strategies(register):  # type: ignore[no-untyped-def]
    """Register mask strategies.

    Call ``register(StrategyClass)`` once per :class:`maskkit.MaskStrategy` subclass.
    Register the class, never an instance, and do no tensor work here: this hook runs
    whenever a command needs the list of strategies. ``StrategyClass.name`` must be
    unique across all installed plugins; a clash is an error naming both distributions.
    """


@hookspec
def register_codecs(register):  # type: ignore[no-untyped-def]
    """Register codecs.

    Call ``register(CodecClass)`` once per :class:`maskkit.Codec` subclass. A codec turns
    ``[B, 1, N]`` audio into a ``[B, D, T]`` encoding and back. Same rules as
    :func:`register_strategies`: classes only, unique ``name``.
    """


@hookspec
def register_commands(cli):  # type: ignore[no-untyped-def]
    """Add click commands or groups to the ``maskkit`` command line.

    ``cli`` is the top-level :class:`click.Group`; call ``cli.add_command(cmd)``.
    Keep module-level imports light: this hook runs while the CLI is built, so a heavy
    import here slows every ``maskkit`` invocation, ``--help`` included.
    """

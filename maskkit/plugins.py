"""Finding, loading and checking plugins.

Plugins are found through the entry-point group ``maskkit``; the built-in strategies and
codecs are registered the same way, from maskkit's own ``pyproject.toml``. Each entry point
is loaded on its own: one that raises is recorded (name, distribution, version, traceback),
reported in one warning line and in ``maskkit plugins``, and skipped; the rest still work.

Which plugins load is chosen *before* anything is imported:

- ``MASKKIT_LOAD_PLUGINS=a,b`` loads only those entry points (set but empty: none at all);
- ``MASKKIT_DISABLE_PLUGINS=a,b`` loads all but those;
- ``MASKKIT_NO_PLUGINS=1`` (CLI: ``--no-plugins``) loads only the built-ins shipped with maskkit;
- ``MASKKIT_STRICT_PLUGINS=1`` raises on the first plugin that fails, instead of skipping it.

The names are the entry-point names that ``maskkit plugins`` prints.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .codec import Codec
    from .strategy import EncodingSpec, MaskStrategy

GROUP = "maskkit"
BUILTIN_DIST = "maskkit"
#: The distribution column of a plugin registered at run time (:func:`register_plugin`).
RUNTIME_DIST = "(runtime)"


@dataclass
class PluginInfo:
    """One plugin: where it comes from, what it registered, or why it failed."""

    name: str
    dist: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed | disabled | runtime
    error: str | None = None
    traceback: str | None = None
    api_version: int | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)
    #: hook name -> (message, traceback) of its failure; a hook run again replaces its entry
    _hook_failures: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @property
    def origin(self) -> str:
        return _origin(self.name, self.dist, self.version)

    def failed_in(self, hook: str, e: BaseException) -> None:
        """Record that hook ``hook`` raised ``e`` (call it in the ``except``); ``error`` and
        ``traceback`` list every hook that failed, each once."""
        self._hook_failures[hook] = (f"{type(e).__name__} in {hook}: {e}", traceback.format_exc())
        self.status = "failed"
        self.error = "; ".join(msg for msg, _ in self._hook_failures.values())
        self.traceback = "".join(tb for _, tb in self._hook_failures.values())


_T = TypeVar("_T")


@dataclass(frozen=True)
class Registered(Generic[_T]):
    """A registered strategy or codec class and the plugin it came from."""

    name: str
    cls: type[_T]
    plugin: str
    dist: str
    version: str

    @property
    def origin(self) -> str:
        return _origin(self.plugin, self.dist, self.version)


def _origin(plugin: str, dist: str, version: str) -> str:
    """How messages name a plugin: ``plugin 'x' from dist 1.0``, or ``runtime plugin 'x'``."""
    if dist == RUNTIME_DIST:
        return f"runtime plugin '{plugin}'"
    return f"plugin '{plugin}' from {dist} {version}"


#: What a strategy or codec name may look like: what users type after --strategy.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _env_list(var: str) -> set[str] | None:
    val = os.environ.get(var)
    if val is None:
        return None
    return {v.strip() for v in val.split(",") if v.strip()}


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def strict_mode() -> bool:
    """Whether ``MASKKIT_STRICT_PLUGINS`` asks for errors instead of skipped plugins."""
    return _truthy("MASKKIT_STRICT_PLUGINS")


def _check_registered(cls: Any, base: type, kind: str) -> None:
    """A registered strategy / codec must be a named ``base`` subclass whose ``Config`` is a
    dataclass with a valid default for every option (what ``--strategy NAME`` alone builds)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        what = (f"an instance of {type(cls).__name__}; register the class itself" if isinstance(cls, base)
                else f"{cls!r}, which is not a {base.__name__} subclass")
        raise TypeError(f"registered {what}")
    name = getattr(cls, "name", "")
    if not name or not isinstance(name, str):
        raise ValueError(f"{cls.__name__} was registered without a name")
    if not _NAME_RE.match(name) or name == "all":
        raise ValueError(f"{cls.__name__} has the {kind} name {name!r}; a name is one word "
                         f"of letters, digits, '-', '_', '.', and not 'all'")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass of options, got {config!r}")
    missing = [f.name for f in dataclasses.fields(config)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise TypeError(f"{cls.__name__}.Config: option(s) {', '.join(missing)} have no default; every "
                        f"option needs one (a {kind} is built from its name alone)")
    from .config import build_config

    build_config(config, {}, owner=f"{kind} '{name}'")  # the defaults' types and ranges


class PluginManager:
    """pluggy's manager plus maskkit's loading rules and registries."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registries: dict[str, dict[str, Registered[Any]]] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading ---------------------------------------------------------------------------
    def _entry_points(self) -> list[md.EntryPoint]:
        seen: set[tuple[str, str]] = set()
        eps = []
        for ep in md.entry_points(group=GROUP):
            key = (ep.name, ep.value)
            if key in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(key)
            eps.append(ep)
        # maskkit's own entry points first, so that a third-party entry point with a built-in's
        # name (e.g. "fixed") is the one reported as a duplicate, never the built-in
        eps.sort(key=lambda ep: ep.dist is None or ep.dist.name != BUILTIN_DIST)
        return eps

    def load(self) -> None:
        """Load the entry points once (idempotent)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            allow = _env_list("MASKKIT_LOAD_PLUGINS")
            deny = _env_list("MASKKIT_DISABLE_PLUGINS") or set()
            builtins_only = _truthy("MASKKIT_NO_PLUGINS")
            strict = _truthy("MASKKIT_STRICT_PLUGINS")
            eps = self._entry_points()
            unknown = sorted(((allow or set()) | deny) - {ep.name for ep in eps})
            if unknown:
                names = ", ".join(repr(n) for n in unknown)
                msg = (f"no installed plugin is named {names} (from --plugins / MASKKIT_LOAD_PLUGINS / "
                       f"MASKKIT_DISABLE_PLUGINS); installed: {', '.join(sorted({ep.name for ep in eps}))}")
                by_dist = {}  # a distribution's name given for its plugins' (pip names the former)
                for ep in eps:
                    if ep.dist is not None:
                        by_dist.setdefault(ep.dist.name.lower().replace("_", "-"), []).append(ep.name)
                hints = [f"{n!r} is a distribution: its plugin(s) are named {', '.join(sorted(by_dist[k]))}"
                         for n in unknown if (k := n.lower().replace("_", "-")) in by_dist]
                msg += "".join(f"; {h}" for h in hints)
                if strict:
                    raise PluginError(msg)
                warnings.warn(f"maskkit: {msg}", stacklevel=2)
            for ep in eps:
                dist = ep.dist.name if ep.dist is not None else "?"
                version = ep.dist.version if ep.dist is not None else "?"
                info = PluginInfo(name=ep.name, dist=dist, version=version, module=ep.value)
                # the same name twice: the later one is listed as NAME@DIST
                key = ep.name if ep.name not in self.plugins else f"{ep.name}@{dist}"
                if ((allow is not None and ep.name not in allow) or ep.name in deny
                        or (builtins_only and dist != BUILTIN_DIST)):
                    info.status = "disabled"
                    self.plugins[key] = info
                    continue
                other = self.plugins.get(ep.name)
                if other is not None and other.status != "disabled":
                    # the filters take entry-point names, which both share: only uninstalling helps
                    msg = (f"two plugins are named '{ep.name}': one from {other.dist} {other.version}, "
                           f"one from {dist} {version}; the one from {dist} is skipped. Uninstall one "
                           f"(pip uninstall {dist})")
                    if strict:
                        raise PluginError(msg)
                    info.status, info.error = "failed", msg
                    warnings.warn(f"maskkit: {msg}", stacklevel=2)
                    self.plugins[key] = info
                    continue
                self.plugins[ep.name] = info
                try:
                    obj = ep.load()
                    self._check_api(obj, info)
                    self.pm.register(obj, name=ep.name)
                except Exception as e:  # a broken plugin must not take maskkit down
                    info.status = "failed"
                    info.error = f"{type(e).__name__}: {e}"
                    info.traceback = traceback.format_exc()
                    if strict:
                        raise PluginError(f"{info.origin} failed to load: {info.error}") from e
                    warnings.warn(f"maskkit: {info.origin} failed to load and was skipped: {info.error} "
                                  f"(see 'maskkit plugins')", stacklevel=2)

    @staticmethod
    def _check_api(obj: Any, info: PluginInfo) -> None:
        api = getattr(obj, "MASKKIT_PLUGIN_API", None)
        if api is None:
            info.api_version = None
            return
        if not isinstance(api, int) or isinstance(api, bool) or api < 1:
            raise PluginError(f"MASKKIT_PLUGIN_API must be an integer >= 1 (this maskkit implements API "
                              f"{hookspecs.PLUGIN_API_VERSION}), got {api!r}")
        info.api_version = api  # (shown by `maskkit plugins` also when refused)
        if api > hookspecs.PLUGIN_API_VERSION:
            where = "this plugin" if info.dist == RUNTIME_DIST else f"a version of {info.dist}"
            raise PluginError(
                f"targets maskkit plugin API {api!r}, but this maskkit implements API "
                f"{hookspecs.PLUGIN_API_VERSION}: upgrade maskkit, or install {where} made for this maskkit")

    def register(self, obj: Any, name: str | None = None) -> str:
        """Register a plugin object at run time (tests, notebooks). Returns its name. The same
        name again replaces the earlier runtime plugin (a notebook cell run twice); the name of
        an installed plugin is refused."""
        with self._lock:
            self.load()
            name = name or getattr(obj, "__name__", None) or f"runtime-{id(obj)}"
            mod = getattr(obj, "__module__", None) or getattr(obj, "__name__", "?")
            info = PluginInfo(name=name, dist=RUNTIME_DIST, version="-", module=str(mod), status="runtime")
            try:
                self._check_api(obj, info)
            except PluginError as e:
                raise PluginError(f"runtime plugin '{name}': {e}") from None
            old = self.plugins.get(name)
            if old is not None and old.dist != RUNTIME_DIST:
                raise PluginError(f"runtime plugin '{name}': the name of the installed {old.origin}; choose "
                                  f"another name")
            previous = self.pm.get_plugin(name)
            if previous is not None:
                self.pm.unregister(name=name)
            try:
                self.pm.register(obj, name=name)
            except (ValueError, pluggy.PluginValidationError) as e:  # a second name for it; bad hooks
                if self.pm.get_plugin(name) is not None:  # (pluggy records the name before it validates)
                    self.pm.unregister(name=name)
                if previous is not None:
                    self.pm.register(previous, name=name)  # as it was
                raise PluginError(f"runtime plugin '{name}': {e}") from None
            self.plugins[name] = info
            self._registries.clear()
            return name

    def unregister(self, name: str) -> None:
        with self._lock:
            self.load()
            if name not in self.plugins and self.pm.get_plugin(name) is None:
                known = ", ".join(sorted(self.plugins)) or "(none)"
                raise UnknownNameError(f"no plugin named {name!r} is registered. Registered: {known}")
            self.pm.unregister(name=name)
            self.plugins.pop(name, None)
            self._registries.clear()

    # -- registries ------------------------------------------------------------------------
    def _builtins_first(self, impls: list[Any]) -> list[Any]:
        """Hook implementations with maskkit's own first (a stable sort), so that in a name clash
        the third-party claimant is the one skipped, whatever its ``tryfirst`` / ``trylast``."""
        def third_party(impl: Any) -> bool:
            info = self.plugins.get(impl.plugin_name)
            return info is None or info.dist != BUILTIN_DIST

        return sorted(impls, key=third_party)

    def _registry(self, kind: str, hook: str, base: type[_T]) -> dict[str, Registered[_T]]:
        with self._lock:
            self.load()
            if kind in self._registries:
                return self._registries[kind]
            reg: dict[str, Registered[_T]] = {}
            for p in self.plugins.values():  # rebuilt after register(): do not list names twice
                p.registers.pop(kind, None)
            for impl in self._builtins_first(getattr(self.pm.hook, hook).get_hookimpls()):
                info = self.plugins.get(impl.plugin_name) or PluginInfo(
                    name=impl.plugin_name, dist="?", version="?", module="?")

                def register(cls: type[_T], _info: PluginInfo = info) -> None:
                    # every fault here is the plugin's, like a failing import: it is skipped, not maskkit
                    _check_registered(cls, base, kind)
                    name = cls.name  # type: ignore[attr-defined]
                    if name in reg:
                        other = reg[name]
                        # suggest disabling the third-party one, never maskkit's own plugin
                        culprit = other.plugin if _info.dist == BUILTIN_DIST else _info.name
                        how = (f"unregister_plugin('{culprit}')" if _info.dist == RUNTIME_DIST else
                               f"uninstall one, or disable one with MASKKIT_DISABLE_PLUGINS={culprit}")
                        raise PluginError(f"two plugins register the {kind} '{name}': {other.origin} and "
                                          f"{_info.origin}; {how}")
                    reg[name] = Registered(name, cls, _info.name, _info.dist, _info.version)
                    _info.registers.setdefault(kind, []).append(name)

                try:
                    impl.function(register=register)
                except Exception as e:
                    for n in info.registers.pop(kind, []):  # none of a failed plugin's names stay
                        reg.pop(n, None)
                    info.failed_in(hook, e)
                    if _truthy("MASKKIT_STRICT_PLUGINS"):
                        raise PluginError(f"{info.origin} failed in {hook}: {e}") from e
                    warnings.warn(f"maskkit: {info.origin} failed in {hook} and was skipped: {e}",
                                  stacklevel=2)
            self._registries[kind] = dict(sorted(reg.items()))
            return self._registries[kind]

    def strategies(self) -> dict[str, Registered[MaskStrategy]]:
        from .strategy import MaskStrategy

        return self._registry("strategy", "register_strategies", MaskStrategy)

    def codecs(self) -> dict[str, Registered[Codec]]:
        from .codec import Codec

        return self._registry("codec", "register_codecs", Codec)

    def add_commands(self, cli: Any) -> None:
        """Every plugin's ``register_commands(cli)``. While one runs, ``cli.adding_plugin`` is its
        :class:`PluginInfo` (the group names it when it refuses a command). A hook that raises is
        one line naming the plugin and its distribution (an error with MASKKIT_STRICT_PLUGINS)."""
        self.load()
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.plugins.get(impl.plugin_name)
            who = info.origin if info is not None else f"plugin '{impl.plugin_name}'"
            before = set(getattr(cli, "commands", {}))
            try:
                cli.adding_plugin = info
                impl.function(cli=cli)
                added = sorted(set(getattr(cli, "commands", {})) - before)
                if info is not None and added:
                    info.registers["command"] = added
            except PluginError as e:
                if strict_mode():  # (the group's refusal of a command, in strict mode, among others)
                    raise
                if info is not None:
                    info.failed_in("register_commands", e)
                print(f"maskkit: {who} failed to add commands: {e}", file=sys.stderr)
            except Exception as e:
                if info is not None:
                    info.failed_in("register_commands", e)
                if _truthy("MASKKIT_STRICT_PLUGINS"):
                    raise PluginError(f"{who} failed in register_commands: {e}") from e
                print(f"maskkit: {who} failed to add commands: {e}", file=sys.stderr)
            finally:
                cli.adding_plugin = None


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
    _manager.load()
    return _manager


def fresh_manager() -> PluginManager:
    """A new manager, loaded now under the current MASKKIT_* variables, with the runtime plugins
    (:func:`register_plugin`) of the process-wide one; that one is left as it is. For
    ``maskkit plugins``, which lists every plugin even in strict mode."""
    mgr = PluginManager()
    mgr.load()
    current = _manager
    if current is not None:
        for name, info in list(current.plugins.items()):
            obj = current.pm.get_plugin(name)
            if info.dist == RUNTIME_DIST and obj is not None:
                mgr.register(obj, name)
    return mgr


def runtime_plugins() -> list[tuple[str, Any]]:
    """``(name, object)`` of every plugin registered with :func:`register_plugin` in this process."""
    mgr = get_manager()
    with mgr._lock:
        return [(name, obj) for name, info in mgr.plugins.items()
                if info.dist == RUNTIME_DIST and (obj := mgr.pm.get_plugin(name)) is not None]


def reset_manager() -> None:
    """Forget loaded plugins (tests; after changing MASKKIT_* variables)."""
    global _manager
    with _manager_lock:
        _manager = None


def register_plugin(obj: Any, name: str | None = None) -> str:
    """Register a plugin (a module or object with ``@hookimpl`` functions) at run time."""
    return get_manager().register(obj, name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin by the name :func:`register_plugin` returned (or ``maskkit plugins``
    shows): its strategies and codecs are gone from every lookup after this call. An unknown
    name raises :class:`~maskkit.errors.UnknownNameError` listing the registered ones."""
    get_manager().unregister(name)


def _lookup(reg: dict[str, Registered[_T]], kind: str, name: str) -> Registered[_T]:
    if name not in reg:
        plugins = get_manager().plugins.values()
        failed = [p.name for p in plugins if p.status == "failed"]
        disabled = [p.name for p in plugins if p.status == "disabled"]
        hint = ""
        if failed:
            hint += f" (plugins that failed to load: {', '.join(failed)}; see 'maskkit plugins')"
        if disabled:
            builtin = {"codec": "; the built-in codecs are plugin 'codecs'",
                       "strategy": "; the built-in strategies are plugins 'fixed' and 'creative-agent'"}
            hint += (f" (plugins not loaded, as --plugins / --no-plugins / MASKKIT_LOAD_PLUGINS / "
                     f"MASKKIT_DISABLE_PLUGINS asked: {', '.join(disabled)}{builtin.get(kind, '')})")
        raise UnknownNameError(f"unknown {kind} '{name}'. Available: {', '.join(reg) or '(none)'}{hint}")
    return reg[name]


def strategy_names() -> list[str]:
    """The names of every registered strategy (built-in and installed plugins)."""
    return list(get_manager().strategies())


def codec_names() -> list[str]:
    """The names of every registered codec."""
    return list(get_manager().codecs())


def get_strategy_entry(name: str) -> Registered[MaskStrategy]:
    """The registry entry (class, plugin, distribution, version) of strategy ``name``; an
    :class:`UnknownNameError` lists the available ones (and plugins that failed or were left out)."""
    return _lookup(get_manager().strategies(), "strategy", name)


def get_codec_entry(name: str) -> Registered[Codec]:
    """The registry entry of codec ``name`` (as :func:`get_strategy_entry`)."""
    return _lookup(get_manager().codecs(), "codec", name)


def build_strategy(name: str, options: Mapping[str, Any] | Iterable[str] | Any = None,
                   spec: EncodingSpec | None = None) -> MaskStrategy:
    """Instantiate the strategy registered as ``name`` with options (a mapping, ``key=value``
    strings or its Config) and an EncodingSpec (default: the strategy's)."""
    entry = get_strategy_entry(name)
    return entry.cls(options, spec=spec)


def build_codec(name: str, options: Mapping[str, Any] | Iterable[str] | Any = None) -> Codec:
    """Instantiate the codec registered as ``name`` with its options."""
    return get_codec_entry(name).cls(options)


def build_untrained(name: str, options: Mapping[str, Any] | Iterable[str] | Any = None,
                    spec: EncodingSpec | None = None, seed: int = 0) -> MaskStrategy:
    """:func:`build_strategy` with its initial weights drawn from ``seed``: a learnable strategy
    built by name for a picture or a mix (``maskkit masks``, ``arrange --mix-only -s``) gives the
    same untrained masks on every run. The global random state is left as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_strategy(name, options, spec=spec)


def resolve_strategy_names(spec: str | Iterable[str]) -> list[str]:
    """``"all"`` or ``"a,b"`` -> a list of registered names (unknown names raise)."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    available = strategy_names()
    if names == ["all"]:
        return available
    for n in names:
        get_strategy_entry(n)
    return list(dict.fromkeys(names))  # a name given twice is one row



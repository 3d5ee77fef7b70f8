"""The plugin manager: default plugins, entry-point discovery, load errors, a typed facade."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import operator
import os
import re
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from ._contract import PLUGIN_API_VERSION, api_version_problem
from ._log import get_logger
from ._version import __version__
from .claims import check_claimed, claim
from .converter import did_you_mean
from .redaction import redact_text, redact_url
from .webhooks import Webhook
from .wire import Outcome, OutgoingRequest, Response, Verdict

if TYPE_CHECKING:
    import aiohttp

    from .events import Event
    from .wire import DeliveryError, DeliveryResult

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "Hooks",
    "PluginContractError",
    "PluginInfo",
    "PluginLoadError",
    "PluginVersionError",
    "Route",
    "build_plugin_manager",
    "get_plugin_manager",
    "hookimpl",
    "hooks_for",
]

ENTRY_POINT_GROUP = "empathy_webhooks"
#: Comma-separated entry-point names to load; unset loads all, empty loads none.
LOAD_PLUGINS_ENV = "EMPATHY_WEBHOOKS_LOAD_PLUGINS"
DEFAULT_PLUGINS = (
    "empathy_webhooks_core.default_plugins.http",
    "empathy_webhooks_core.default_plugins.custom",
    "empathy_webhooks_core.default_plugins.stores",
)

hookimpl = pluggy.HookimplMarker(ENTRY_POINT_GROUP)
log = get_logger()

#: Hooks whose every result the core awaits, so an `async def` implementation works. Every
#: other hook is called synchronously: pluggy cannot await, and a coroutine returned by a
#: `firstresult` hook is not None, so it would win for every webhook and never run.
AWAITED_HOOKS = frozenset({"flush"})
#: Hooks about one webhook: the core calls only the implementation of the plugin that
#: registered the webhook's type (then those of its registered ancestors' owners, then the
#: core's defaults), never every plugin's. Plugins need no `isinstance` guard.
PER_TYPE_HOOKS = ("format_payload", "deliver", "classify_response", "flush", "webhook_state")

# RFC 9110 token characters: what a header a plugin adds (`before_attempt`) may be named.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What observers are shown of a delivery without context (most): one read-only empty
#: mapping shared by every attempt, rather than a proxy made twice per attempt.
_NO_CONTEXT: Mapping[str, str] = MappingProxyType({})
_SUCCESS_ARGS = ("webhook", "event", "result")
_HOOK_NAMES = tuple(
    name for name, value in vars(hookspecs).items() if hasattr(value, "empathy_webhooks_spec")
)


class PluginContractError(TypeError):
    """A plugin that breaks a hook's contract: an `async def` where the core calls the hook
    synchronously, or a result of the wrong type. The message names the plugin and the hook."""


def contract_problems(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """What is wrong with how `plugin` implements its hooks (empty when nothing is)."""
    name = pm.get_name(plugin) or repr(plugin)
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            # A misspelt hook (pluggy's `check_pending` would refuse the whole manager, and
            # every other plugin with it): this plugin's problem, named as such.
            unknown = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
            if any(not impl.optionalhook for impl in unknown):
                problems.append(
                    f"plugin {name!r}: it implements {caller.name!r}, which is not a hook"
                    f"{did_you_mean(caller.name, _HOOK_NAMES)} (see docs/hooks.md)"
                )
            continue
        if caller.name in AWAITED_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            function = impl.function
            if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
                problems.append(
                    f"plugin {name!r}: its {caller.name} hook is `async def`, but the core "
                    f"calls {caller.name} synchronously (pluggy cannot await; the coroutine "
                    "would never run). Make it a plain function; deliver returns an "
                    "awaitable"
                )
    return problems


class PluginVersionError(PluginContractError):
    """A plugin written for a plugin API version this core does not provide (its `PLUGIN_API`
    against the core's `PLUGIN_API_VERSION`). The message names both versions."""


def check_api_version(plugin: Any, name: str) -> None:
    """Refuse `plugin` (before it is registered) when it needs another plugin API version."""
    problem = api_version_problem(plugin, name, PLUGIN_API_VERSION)
    if problem is not None:
        raise PluginVersionError(problem)


def _check_plugin(pm: pluggy.PluginManager, plugin: Any) -> None:
    problems = contract_problems(pm, plugin)
    if problems:
        pm.unregister(plugin)
        raise PluginContractError("; ".join(problems))


#: The hooks that name things (no arguments, asked once per manager), and what each value
#: of their mapping must be.
_NAMING_HOOKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "webhook_types": (
        lambda cls: isinstance(cls, type) and issubclass(cls, Webhook),
        "Webhook classes",
    ),
    "store_backends": (callable, "store factories"),
}


def _naming_problem(hook_name: str, plugin: str, answer: Callable[[], Any]) -> str | None:
    """What is wrong with what `plugin`'s naming hook (`webhook_types`, `store_backends`)
    answers, or None. One that raises is the plugin's bug too: said with its name, rather
    than as a bare exception out of every dispatcher of the process."""
    check, what = _NAMING_HOOKS[hook_name]
    try:
        mapping = answer()
    except Exception as exc:
        raised = redact_text(f"{type(exc).__name__}: {exc}")
        return f"plugin {plugin!r}: {hook_name} raised {raised} (a plugin bug)"
    if mapping is None:
        return None
    if not isinstance(mapping, Mapping) or not all(
        isinstance(key, str) and check(value) for key, value in mapping.items()
    ):
        return (
            f"plugin {plugin!r}: {hook_name} returned {_kind_of(mapping)}, not a mapping of "
            f"names to {what} (a plugin bug)"
        )
    return None


def _check_answers(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Ask an entry point's naming hooks once, as it loads: one that raises or answers
    something else is a load error of that plugin (skipped), not a failure of every
    dispatcher later."""
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name not in _NAMING_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                problem = _naming_problem(caller.name, name, impl.function)
                if problem is not None:
                    pm.unregister(plugin)
                    raise PluginContractError(problem)


@attrs.frozen
class PluginLoadError:
    """A plugin that could not be loaded, and why."""

    name: str
    distribution: str | None
    error: str


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    webhook_types: tuple[str, ...]
    hooks: tuple[str, ...]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what discovery learnt: load errors and distributions."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.load_errors: list[PluginLoadError] = []
        self.distributions: dict[str, tuple[str | None, str | None]] = {}
        #: `EMPATHY_WEBHOOKS_LOAD_PLUGINS` as read (None: unset, every plugin loads).
        self.load_plugins: str | None = None
        #: Installed plugins (entry-point names), those the variable left out, and names in it
        #: that are not installed.
        self.installed: list[str] = []
        self.left_out: list[str] = []
        self.unknown_in_load_plugins: list[str] = []

    def install_hint(self, name: str) -> str:
        """How to get plugin `name` loaded: install it, or name it in the variable that
        keeps it out."""
        if name in self.left_out:
            return (
                f"the {name!r} plugin is installed but {LOAD_PLUGINS_ENV}="
                f"{self.load_plugins!r} leaves it out; add {name} to it"
            )
        hint = f"pip install empathy-webhooks-{name}"
        if self.load_plugins is not None:
            hint += f", and add {name} to {LOAD_PLUGINS_ENV} (now {self.load_plugins!r})"
        return hint


def _allowed(env: Mapping[str, str]) -> set[str] | None:
    raw = env.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def build_plugin_manager(
    *,
    load_entry_points: bool = True,
    env: Mapping[str, str] | None = None,
    strict: bool = False,
    extra_plugins: Iterable[Any] = (),
) -> PluginManager:
    """A new plugin manager with the default plugins and every installed entry point.

    A plugin that fails to import or register, needs a plugin API version this core does not
    provide (`PluginVersionError`), or implements a hook the core calls
    synchronously as `async def`, is recorded in ``pm.load_errors`` with its name and error,
    logged and skipped (``strict=True`` raises instead). `extra_plugins` are the caller's own
    objects: a broken one raises `PluginContractError` at once.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name.rsplit(".", 1)[-1] + " (core)")
        _check_plugin(pm, module)
        pm.distributions[pm.get_name(module) or module_name] = (
            "empathy-webhooks-core",
            __version__,
        )
    if load_entry_points:
        environ = os.environ if env is None else env
        allowed = _allowed(environ)
        pm.load_plugins = environ.get(LOAD_PLUGINS_ENV)
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        pm.installed = installed = sorted({ep.name for ep in entry_points})
        if allowed is not None:
            pm.left_out = [name for name in installed if name not in allowed]
            pm.unknown_in_load_plugins = sorted(allowed - set(installed))
            for name in pm.unknown_in_load_plugins:
                log.warning(
                    "load_plugins_names_unknown_plugin",
                    plugin=name,
                    variable=LOAD_PLUGINS_ENV,
                    error=f"no installed plugin is named {name!r}"
                    f"{did_you_mean(name, installed)}; installed: "
                    f"{', '.join(installed) or 'none'}",
                )
        for entry_point in entry_points:
            if allowed is not None and entry_point.name not in allowed:
                continue
            if pm.has_plugin(entry_point.name):
                continue
            dist = entry_point.dist
            try:
                plugin = entry_point.load()
                check_api_version(plugin, entry_point.name)
                pm.register(plugin, name=entry_point.name)
                _check_plugin(pm, plugin)
                _check_answers(pm, plugin, entry_point.name)
            # SystemExit too: a plugin that gives up with `sys.exit()` at import (a missing
            # library) must not end the application that merely has it installed.
            except (Exception, SystemExit) as exc:
                if strict:
                    raise
                error = PluginLoadError(
                    entry_point.name, dist.name if dist else None, f"{type(exc).__name__}: {exc}"
                )
                pm.load_errors.append(error)
                log.warning("plugin_load_failed", plugin=entry_point.name, error=error.error)
                continue
            pm.distributions[entry_point.name] = (
                dist.name if dist else None,
                dist.version if dist else None,
            )
    for plugin in extra_plugins:
        check_api_version(plugin, getattr(plugin, "__name__", None) or repr(plugin))
        pm.register(plugin)
        _check_plugin(pm, plugin)
    pm.check_pending()
    return pm


_pm: PluginManager | None = None
_pm_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process's plugin manager, built on first use (importing the package loads nothing)."""
    global _pm
    with _pm_lock:
        if _pm is None:
            _pm = build_plugin_manager()
        return _pm


def reset_plugin_manager() -> None:
    """Forget the process's plugin manager (tests that install plugins call this)."""
    global _pm
    with _pm_lock:
        _pm = None


def _hook_failed(hook: str, plugin: str, exc: Exception, **context: Any) -> None:
    """Log a plugin hook that raised. The core keeps going (one plugin cannot silence the rest
    or stop a delivery), so this line is how its author learns; the exception text is redacted
    because a plugin may put a URL or token in it."""
    log.error(
        "plugin_hook_failed",
        hook=hook,
        plugin=plugin,
        **context,
        error=redact_text(f"{type(exc).__name__}: {exc}"),
    )


def _kind_of(value: Any) -> str:
    if inspect.iscoroutine(value):
        value.close()  # never awaited: close it, so Python does not warn about it later
        return "a coroutine (is the hook `async def`?)"
    return "None" if value is None else f"a {type(value).__name__}"


def _wrong_request_field(request: OutgoingRequest) -> str | None:
    """What is wrong with the fields of a request a plugin made, or None. `OutgoingRequest`
    does not check them (it is built once per delivery), and a URL that is not a string
    crashed the worker: the delivery stayed queued until `close` dropped it."""
    if type(request.url) is not str:
        return f"url is {_kind_of(request.url)}, not a str"
    if type(request.method) is not str:
        return f"method is {_kind_of(request.method)}, not a str"
    if not isinstance(request.body, bytes):
        return (
            f"body is {_kind_of(request.body)}, not bytes (encode it, or build the request "
            "with OutgoingRequest.json)"
        )
    for name in request.headers:
        if type(name) is not str:
            return f"headers hold a name that is {_kind_of(name)}, not a str"
    return None


def _copied(value: Any) -> Any:
    """A copy of JSON data (an event's data holds only dicts, lists and plain values)."""
    # Plain values are taken as they are, without a call each: most of an event is them.
    if type(value) is dict:
        return {
            key: _copied(item) if type(item) in _CONTAINERS else item for key, item in value.items()
        }
    if type(value) is list:
        return [_copied(item) if type(item) in _CONTAINERS else item for item in value]
    return value


_CONTAINERS = frozenset({dict, list})


def _own_copy(event: Event) -> Event:
    """`event` with its own `data` and `metadata`: what a plugin's `format_payload` may
    change without another webhook seeing it. Made field by field (`copy.copy` of a slotted
    attrs class takes several times as long), without checking again what `Event` checked."""
    cls = type(event)
    own = object.__new__(cls)
    for name in _field_names(cls):
        object.__setattr__(own, name, getattr(event, name))
    object.__setattr__(own, "data", _copied(event.data))
    object.__setattr__(own, "metadata", _copied(event.metadata))
    return own


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in attrs.fields(cls))
    return names


def _is_core(plugin: Any) -> bool:
    return getattr(plugin, "__name__", None) in DEFAULT_PLUGINS


def _positional(impl: Any, argnames: tuple[str, ...]) -> Callable[..., Any]:
    """`impl` called with every argument of its hook, in the spec's order: the function itself
    when it takes them all (the usual case, no extra call), else an adapter (pluggy lets an
    implementation take fewer)."""
    function = impl.function
    if tuple(impl.argnames) == argnames:
        return function  # type: ignore[no-any-return]
    index = tuple(argnames.index(name) for name in impl.argnames)
    if not index:
        return lambda *args: function()
    if len(index) == 1:
        (only,) = index
        return lambda *args: function(args[only])
    pick = operator.itemgetter(*index)  # one C call per attempt, not a list built in Python
    return lambda *args: function(*pick(args))


@attrs.frozen
class AttemptWatchers:
    """The `before_attempt` and `after_attempt` implementations that watch one attempt, each
    as (function of the spec's arguments in order, plugin name)."""

    before: list[tuple[Callable[..., Any], str]]
    after: list[tuple[Callable[..., Any], str]]


@attrs.frozen
class Route:
    """Who answers the per-type hooks (`PER_TYPE_HOOKS`) for one webhook class, resolved once
    per class: the plugins that registered it or its nearest registered ancestors (nearest
    first), then the core's defaults (HTTP `deliver` and `classify_response`). Each hook is a
    tuple of (function taking the hook's arguments in order, plugin name, whether it is the
    core's own code: a default, or the owner `custom`); the first that answers other than
    None wins."""

    #: The owning plugins' names, nearest first; empty when no loaded plugin registered the
    #: class or an ancestor.
    owners: tuple[str, ...]
    format_payload: tuple[tuple[Callable[..., Any], str, bool], ...]
    deliver: tuple[tuple[Callable[..., Any], str, bool], ...]
    classify_response: tuple[tuple[Callable[..., Any], str, bool], ...]
    flush: tuple[tuple[Callable[..., Any], str, bool], ...]
    webhook_state: tuple[tuple[Callable[..., Any], str, bool], ...]


class Hooks:
    """A typed facade over ``pm.hook``: the rest of the core calls these, never pluggy.

    Per-type hooks (`PER_TYPE_HOOKS`) go to the plugin that registered the webhook's type
    (`route`), then to the core's defaults; broadcast hooks (`on_success`, `on_failure`,
    `dispatcher_started`) go to every plugin, in pluggy's order: `tryfirst`, then plain ones
    (the last registered first), then `trylast`. It checks what each plugin returns: a result
    of the wrong type is that plugin's bug, raised as `PluginContractError` naming the plugin
    and the hook (a delivery then fails with that reason and is dead-lettered).
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._types: dict[str, type[Webhook]] | None = None
        #: Each registered class's owning plugin (object and name).
        self._owners: dict[type[Webhook], tuple[Any, str]] = {}
        self._routes: dict[type[Any], Route] = {}
        self._claims: weakref.WeakKeyDictionary[Webhook, Webhook] = weakref.WeakKeyDictionary()
        self._broadcasts: dict[str, tuple[list[Any], tuple[str, ...], list[tuple[Any, str]]]] = {}
        #: The `on_success` implementations prepared, a `quiet` answer, and what it leaves.
        self._listening: tuple[list[Any], tuple[str, ...], list[tuple[Any, str]]] | None = None
        #: Plugins whose `observing` answered something other than a bool or None (said once).
        self._observing_reported: set[str] = set()
        self._check_plugins()

    def _check_plugins(self) -> None:
        """Refuse a plugin registered after the manager was built that breaks the contract
        (those found while building were already refused or skipped)."""
        plugins = tuple(plugin for _, plugin in self.pm.list_name_plugin() if plugin is not None)
        seen = getattr(self.pm, "_empathy_checked", None)
        if seen == tuple(map(id, plugins)):
            return
        problems = [problem for plugin in plugins for problem in contract_problems(self.pm, plugin)]
        if problems:
            raise PluginContractError("; ".join(problems))
        self.pm._empathy_checked = tuple(map(id, plugins))  # type: ignore[attr-defined]

    def _impls(self, hook_name: str) -> list[Any]:
        """The hook's implementations in calling order (pluggy keeps them reversed)."""
        caller = getattr(self.pm.hook, hook_name)
        return [
            impl
            for impl in reversed(caller.get_hookimpls())
            if not (impl.hookwrapper or impl.wrapper)
        ]

    def _broken(self, plugin: str, hook_name: str, message: str) -> PluginContractError:
        if plugin.isdigit():  # pluggy names an object registered without a name by its id
            plugin = plugin_label(plugin, self.pm.get_plugin(plugin))
        error = PluginContractError(f"plugin {plugin!r}: {hook_name} {message} (a plugin bug)")
        log.error("plugin_contract_broken", plugin=plugin, hook=hook_name, error=str(error))
        return error

    def _mappings(
        self, hook_name: str, check: Callable[[Any], bool], what: str
    ) -> list[tuple[Any, Mapping[str, Any]]]:
        """Each plugin's mapping from a hook that names things (types, stores), with the
        implementation that gave it."""
        found = []
        for impl in self._impls(hook_name):
            try:
                mapping = impl.function()  # these hooks take no arguments
            except Exception as exc:
                # Named: a bare exception out of every dispatcher said nothing of whose.
                raised = redact_text(f"{type(exc).__name__}: {exc}")
                raise self._broken(impl.plugin_name, hook_name, f"raised {raised}") from exc
            if mapping is None:
                continue
            if not isinstance(mapping, Mapping) or not all(
                isinstance(key, str) and check(value) for key, value in mapping.items()
            ):
                raise self._broken(
                    impl.plugin_name,
                    hook_name,
                    f"returned {_kind_of(mapping)}, not a mapping of names to {what}",
                )
            found.append((impl, mapping))
        return found

    def webhook_types(self) -> dict[str, type[Webhook]]:
        """Every registered webhook type by name. Two plugins registering the same name, or
        the same class, is an error naming both (the core could not tell whose it is)."""
        if self._types is None:
            types: dict[str, type[Webhook]] = {}
            owners: dict[type[Webhook], tuple[Any, str]] = {}
            named: dict[str, str] = {}
            is_type = lambda cls: isinstance(cls, type) and issubclass(cls, Webhook)  # noqa: E731
            for impl, mapping in self._mappings("webhook_types", is_type, "Webhook classes"):
                plugin = impl.plugin_name
                for name, cls in mapping.items():
                    if name in types and (types[name] is not cls or named[name] != plugin):
                        raise ValueError(
                            f"two plugins register webhook type {name!r}: {named[name]!r} "
                            f"({types[name].__module__}.{types[name].__qualname__}) and "
                            f"{plugin!r} ({cls.__module__}.{cls.__qualname__}); uninstall "
                            "one, or leave it out with EMPATHY_WEBHOOKS_LOAD_PLUGINS"
                        )
                    if cls in owners and owners[cls][0] is not impl.plugin:
                        raise ValueError(
                            f"two plugins register webhook class {cls.__qualname__} "
                            f"({cls.__module__}): {owners[cls][1]!r} and {plugin!r}; the "
                            "core calls one owner's hooks for a webhook, so uninstall one, "
                            "or leave it out with EMPATHY_WEBHOOKS_LOAD_PLUGINS"
                        )
                    types[name] = cls
                    named[name] = plugin
                    owners[cls] = (impl.plugin, plugin)
            self._owners = owners
            self._types = types
            self._warn_unowned()
        return self._types

    def _warn_unowned(self) -> None:
        """A plugin with per-type hooks but no webhook type of its own: the core never calls
        them (they would answer for other plugins' webhooks), so say so at start-up."""
        owning = {id(plugin) for plugin, _ in self._owners.values()}
        unused: dict[str, list[str]] = {}
        for hook_name in PER_TYPE_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin
                wrapper = impl.hookwrapper or impl.wrapper
                if id(plugin) in owning and not wrapper:
                    continue
                if _is_core(plugin) and not wrapper:
                    continue  # the core's defaults, called for every type
                unused.setdefault(impl.plugin_name, []).append(
                    f"{hook_name} (a wrapper)" if wrapper else hook_name
                )
        # Elsewhere the core calls each plugin's implementation itself (one plugin's bug is
        # then its own), so a wrapper is never run: said, as nothing else would say it.
        wrapped: dict[str, list[str]] = {}
        for hook_name in _HOOK_NAMES:
            if hook_name in PER_TYPE_HOOKS or hook_name == "webhook_for_url":
                continue
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.hookwrapper or impl.wrapper:
                    wrapped.setdefault(impl.plugin_name, []).append(hook_name)
        for plugin_name, hooks in wrapped.items():
            log.warning(
                "plugin_hooks_never_called",
                plugin=plugin_name,
                hooks=", ".join(hooks),
                error=(
                    f"plugin {plugin_name!r} implements {', '.join(hooks)} as hook wrappers, "
                    "which the core never runs (it calls each plugin's implementation itself); "
                    "implement them plainly"
                ),
            )
        for plugin_name, hooks in unused.items():
            log.warning(
                "plugin_hooks_never_called",
                plugin=plugin_name,
                hooks=", ".join(hooks),
                error=(
                    f"plugin {plugin_name!r} implements {', '.join(hooks)}, which the core "
                    "calls only for webhooks of types their plugin registers (webhook_types), "
                    "and it registers none (or these are wrappers): they are never called. "
                    "Register your webhook class; to observe every delivery, use on_success "
                    "and on_failure"
                ),
            )

    def route(self, cls: type[Any]) -> Route:
        """The per-type hooks for webhooks of class `cls` (resolved once, then cached)."""
        route = self._routes.get(cls)
        if route is None:
            route = self._routes[cls] = self._resolve(cls)
        return route

    def _resolve(self, cls: type[Any]) -> Route:
        self.webhook_types()
        owners: list[tuple[Any, str]] = []
        for klass in cls.__mro__:
            owner = self._owners.get(klass)
            if owner is not None and all(owner[0] is not seen for seen, _ in owners):
                owners.append(owner)
        chains = {}
        for hook_name in PER_TYPE_HOOKS:
            caller = getattr(self.pm.hook, hook_name)
            argnames = tuple(caller.spec.argnames)
            impls = [
                impl
                for impl in reversed(caller.get_hookimpls())
                if not (impl.hookwrapper or impl.wrapper)
            ]
            chain = [
                # The core's own plugin may own a class too (`custom` owns `CustomWebhook`,
                # which a third party may subclass): still the core's code, trusted as such.
                (_positional(impl, argnames), impl.plugin_name, _is_core(plugin))
                for plugin, _ in owners
                for impl in impls
                if impl.plugin is plugin
            ]
            owning = {id(plugin) for plugin, _ in self._owners.values()}
            chain += [
                (_positional(impl, argnames), impl.plugin_name, True)
                for impl in impls
                if _is_core(impl.plugin) and id(impl.plugin) not in owning
            ]
            chains[hook_name] = tuple(chain)
        return Route(owners=tuple(name for _, name in owners), **chains)

    def store_backends(self) -> dict[str, Callable[[str], Any]]:
        backends: dict[str, Callable[[str], Any]] = {}
        for _, mapping in self._mappings("store_backends", callable, "store factories"):
            backends.update(mapping)
        return backends

    def webhook_for_url(self, url: str, options: Mapping[str, Any]) -> Webhook | None:
        """The webhook the plugin of `url`'s service makes of it, or None (see `claimed`)."""

        claimed, plugin = self._claim(url, options)
        if claimed is None:
            return None
        try:
            check_claimed(claimed, plugin, options)
        except (TypeError, ValueError) as exc:
            raise self._broken(plugin, "webhook_for_url", str(exc)) from None
        return claimed  # type: ignore[no-any-return]

    def claimed(self, webhook: Webhook) -> Webhook:
        """`webhook`, or for a plain `CustomWebhook`/`WebhookConfig` whose URL names a
        service (`hooks.slack.com`), the webhook that service's plugin makes of it; the same
        object every time for one webhook."""

        return claim(self, webhook, self._claims)

    def format_payload(self, webhook: Webhook, event: Event) -> OutgoingRequest:
        cls = type(webhook)
        route = self._routes.get(cls) or self.route(cls)
        own: Event | None = None
        for function, plugin, core in route.format_payload:
            if core:
                request = function(webhook, event)
            else:
                # The event is shared by every webhook it fans out to (and is what `emit`
                # returned): a plugin that tidies it in place must change its own message
                # only, never another webhook's alert.
                if own is None:
                    own = _own_copy(event)
                request = function(webhook, own)
            if request is None:
                continue
            if not isinstance(request, OutgoingRequest):
                raise self._broken(
                    plugin,
                    "format_payload",
                    f"returned {_kind_of(request)}, not an OutgoingRequest",
                )
            if not core:  # the core's own requests are built right: checked once, in its tests
                wrong = _wrong_request_field(request)
                if wrong is not None:
                    raise self._broken(
                        plugin, "format_payload", f"returned a request whose {wrong}"
                    )
            return request
        raise LookupError(
            f"no installed plugin formats webhooks of type {cls.__name__} "
            f"(kind {webhook.kind!r}); is its plugin installed and loaded?"
        )

    def deliver(
        self,
        webhook: Webhook,
        request: OutgoingRequest,
        session: aiohttp.ClientSession,
        state: Any = None,
    ) -> Awaitable[Response]:
        return self.start_delivery(webhook, request, session, state)[0]

    def start_delivery(
        self,
        webhook: Webhook,
        request: OutgoingRequest,
        session: aiohttp.ClientSession,
        state: Any = None,
        state_of: Callable[[Webhook, Hooks], Any] | None = None,
    ) -> tuple[Awaitable[Response], bool]:
        """`deliver`'s awaitable, and whether the core's own HTTP delivery answered: its send
        ends within the webhook's timeout by itself and answers a `Response`, so the caller
        need not bound or check it (a plugin's answer is checked, and bounded by the caller).
        With `state_of`, the state is `state_of(webhook, hooks)` when the webhook's type may
        keep one, else None."""
        cls = type(webhook)
        route = self._routes.get(cls) or self.route(cls)
        if state_of is not None and route.webhook_state:
            # Looked up only for a type whose plugin may keep state (most keep none).
            state = state_of(webhook, self)
        for function, plugin, core in route.deliver:
            awaitable = function(webhook, request, session, state)
            if awaitable is None:
                continue
            if core:
                return awaitable, True
            if not inspect.isawaitable(awaitable):
                raise self._broken(
                    plugin, "deliver", f"returned {_kind_of(awaitable)}, not an awaitable"
                )
            return self._answer(awaitable, plugin), False
        raise LookupError(f"no installed plugin delivers webhooks of kind {webhook.kind!r}")

    async def _answer(self, awaitable: Awaitable[Any], plugin: str) -> Response:
        response = await awaitable
        if not isinstance(response, Response):
            raise self._broken(
                plugin, "deliver", f"answered with {_kind_of(response)}, not a Response"
            )
        if type(response.status) is not int or not isinstance(response.body, bytes):
            wrong = "status" if type(response.status) is not int else "body"
            raise self._broken(
                plugin,
                "deliver",
                f"answered with a Response whose {wrong} is {_kind_of(getattr(response, wrong))}"
                f", not {'an int' if wrong == 'status' else 'bytes'}",
            )
        return response

    def classify_response(
        self, webhook: Webhook, request: OutgoingRequest, response: Response
    ) -> Verdict:
        cls = type(webhook)
        route = self._routes.get(cls) or self.route(cls)
        for function, plugin, _ in route.classify_response:
            verdict = function(webhook, request, response)
            if verdict is None:
                continue
            if not isinstance(verdict, Verdict):
                raise self._broken(
                    plugin, "classify_response", f"returned {_kind_of(verdict)}, not a Verdict"
                )
            if not isinstance(verdict.outcome, Outcome):
                # Verdict does not check it; the worker then failed on it as an internal error.
                raise self._broken(
                    plugin,
                    "classify_response",
                    f"returned a Verdict whose outcome is {verdict.outcome!r}, not an Outcome "
                    "(Outcome.SUCCESS, RETRY, FAIL or GONE)",
                )
            return verdict
        raise self._broken("(none)", "classify_response", "returned None, not a Verdict")

    def _claim(self, url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
        """`_first` for `webhook_for_url`, where a plugin that raises (but the `ValueError` its
        spec asks for, "mine, but unusable") is logged and passed over: it is asked about
        every generic webhook's URL, and its bug must not stop those that are not its own."""
        impls = self.pm.hook.webhook_for_url.get_hookimpls()
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            # A wrapper runs the whole chain in pluggy: one plugin's bug cannot be passed over
            # alone, so the chain is (the webhook stays generic), said with the URL masked.
            # It had raised out of the dispatcher's construction with the raw URL in its text.
            try:
                return self._first("webhook_for_url", url=url, options=options)
            except ValueError:
                raise
            except Exception as exc:
                self._claim_failed(url, options, "the webhook_for_url hook chain", exc)
                return None, ""
        for impl in reversed(impls):
            kwargs = {"url": url, "options": options}
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
            except ValueError:
                raise
            except Exception as exc:
                self._claim_failed(url, options, plugin_label(impl.plugin_name, impl.plugin), exc)
                continue
            if result is not None:
                return result, impl.plugin_name
        return None, ""

    @staticmethod
    def _claim_failed(url: str, options: Mapping[str, Any], plugin: str, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if url:  # often the credential itself (a chat webhook's path, a query token)
            text = text.replace(url, redact_url(url, secret_path=True))
        log.error(
            "plugin_hook_failed",
            hook="webhook_for_url",
            plugin=plugin,
            webhook=options.get("name"),
            error=redact_text(text),
            reason="the plugin is passed over for this URL",
        )

    def _first(self, hook_name: str, **kwargs: Any) -> tuple[Any, str]:
        """A `firstresult` call over every plugin (for hooks asked before a webhook's type is
        known, like `webhook_for_url`) that also says which plugin answered."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            # A wrapper may change the result: let pluggy run the whole chain.
            return caller(**kwargs), "a hook wrapper"
        for impl in reversed(impls):
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if result is not None:
                return result, impl.plugin_name
        return None, ""

    def _broadcast(self, hook_name: str) -> tuple[tuple[str, ...], list[tuple[Any, str]]]:
        """The spec's argument names, and each implementation in pluggy's order as a function
        of them in order with its plugin's name; prepared again whenever the implementations
        change (`on_success` is broadcast after every delivery)."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        cached = self._broadcasts.get(hook_name)
        if cached is None or cached[0] != impls:
            argnames = tuple(caller.spec.argnames)
            prepared = [
                (_positional(impl, argnames), impl.plugin_name)
                for impl in reversed(impls)
                if not (impl.hookwrapper or impl.wrapper)
            ]
            cached = self._broadcasts[hook_name] = (impls, argnames, prepared)
        return cached[1], cached[2]

    def _listener_failed(self, hook_name: str, plugin: str, exc: Exception, args: Any) -> None:
        """`_hook_failed` for a hook told about one delivery (its arguments in the spec's
        order, the webhook and the event first): the line names them, so the failure can be
        traced to the delivery, and the plugin by a readable name (pluggy names an object
        registered without one by its id)."""
        context: dict[str, Any] = {}
        args = tuple(args)
        if len(args) >= 2 and isinstance(args[0], Webhook):
            context = {"webhook": args[0].name, "event_id": getattr(args[1], "event_id", None)}
        if plugin.isdigit():
            plugin = plugin_label(plugin, self.pm.get_plugin(plugin))
        _hook_failed(hook_name, plugin, exc, **context)

    def _each(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation on its own, in pluggy's order, so one that raises cannot
        silence the rest."""
        argnames, prepared = self._broadcast(hook_name)
        return self._each_of(hook_name, prepared, [kwargs[name] for name in argnames])

    def _each_of(
        self, hook_name: str, prepared: list[tuple[Any, str]], args: Iterable[Any]
    ) -> list[Any]:
        """`_each` with the implementations prepared and `args` in the spec's order."""
        results = []
        for function, plugin in prepared:
            try:
                result = function(*args)
            except Exception as exc:
                self._listener_failed(hook_name, plugin, exc, args)
                continue
            if (
                result is not None
                and hook_name not in AWAITED_HOOKS
                and inspect.iscoroutine(result)
            ):
                self._broken(plugin, hook_name, f"returned {_kind_of(result)}")
                continue
            results.append(result)
        return results

    def wants_success(self) -> bool:
        """Whether any plugin listens to `on_success` now (the result is built only then)."""
        return bool(self.success_listeners(self.quiet() if self.asks_observing else ()))

    def success_listeners(self, quiet: tuple[str, ...] = ()) -> list[tuple[Any, str]]:
        """The `on_success` implementations to tell of a success, in pluggy's order: all but
        those of the `quiet` plugins (`quiet()`, asked before the attempt that succeeded).
        Empty: no result to build."""
        # Prepared again when the implementations change (a plugin registered since is told);
        # what `quiet` leaves is kept for the next.
        prepared = self._broadcast("on_success")[1]
        if not quiet:
            return prepared
        left = self._listening
        if left is None or left[0] is not prepared or left[1] != quiet:
            listening = [entry for entry in prepared if entry[1] not in quiet]
            left = self._listening = (prepared, quiet, listening)
        return left[2]

    def on_success(
        self,
        webhook: Webhook,
        event: Event,
        result: DeliveryResult,
        listeners: list[tuple[Any, str]] | None = None,
    ) -> None:
        """Tell `listeners` (`success_listeners`, asked just before; every implementation
        when None)."""
        if listeners is not None:
            # Prepared as functions of the spec's arguments in order: no keyword mapping.
            self._each_of("on_success", listeners, (webhook, event, result))
            return
        argnames, prepared = self._broadcast("on_success")
        if argnames == _SUCCESS_ARGS:
            self._each_of("on_success", prepared, (webhook, event, result))
        else:
            self._each("on_success", webhook=webhook, event=event, result=result)

    def on_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        self._each("on_failure", webhook=webhook, event=event, error=error)

    def dispatcher_started(self, dispatcher: Any) -> None:
        self._each("dispatcher_started", dispatcher=dispatcher)

    def flush(self, webhook: Webhook, state: Any, dispatcher: Any) -> list[Awaitable[None]]:
        """The webhook's owner's flush (per-type, like `deliver`): an awaitable to await, or
        none. One that raises or returns something else is logged, never raised."""
        for function, plugin, _ in self.route(type(webhook)).flush:
            try:
                result = function(webhook, state, dispatcher)
            except Exception as exc:
                _hook_failed("flush", plugin, exc)
                return []
            if result is None:
                continue
            if not inspect.isawaitable(result):
                self._broken(plugin, "flush", f"returned {_kind_of(result)}, not an awaitable")
                return []
            return [result]
        return []

    # -- per-webhook plugin state (_pipeline/state.py) -------------------------------------

    def webhook_state(self, webhook: Webhook) -> Any:
        """The webhook's plugin's state object, or None. A hook that raises is logged, and the
        webhook runs without state (its plugin sees None)."""
        state = None
        for function, plugin, _ in self.route(type(webhook)).webhook_state:
            try:
                state = function(webhook)
            except Exception as exc:
                _hook_failed("webhook_state", plugin, exc, webhook=webhook.name)
                return None
            if inspect.iscoroutine(state):
                # Its plugin would run without the state it meant to make: said, not dropped.
                state.close()
                wrong = TypeError("webhook_state returned a coroutine: it must return the object")
                _hook_failed("webhook_state", plugin, wrong, webhook=webhook.name)
                return None
            if state is not None:
                break
        return state

    def webhook_stats(self, webhook: Webhook, state: Any) -> dict[str, Any]:
        """Every plugin's figures for the webhook, as ``plugin.<name>.<key>``. A plugin that
        raises or answers something else than a mapping is logged and left out."""
        figures: dict[str, Any] = {}
        for impl in self._impls("webhook_stats"):
            kwargs = {"webhook": webhook, "state": state}
            try:
                found = impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                _hook_failed("webhook_stats", impl.plugin_name, exc)
                continue
            if found is None:
                continue
            try:
                # Read inside: a mapping whose items() raised made get_webhook_stats and
                # close() raise, where the docstring promises "logged and left out".
                items = list(found.items()) if isinstance(found, Mapping) else None
            except Exception as exc:
                _hook_failed("webhook_stats", impl.plugin_name, exc)
                continue
            if items is None or not all(
                isinstance(key, str) and _is_figure(value) for key, value in items
            ):
                self._broken(
                    impl.plugin_name,
                    "webhook_stats",
                    f"returned {_kind_of(found)}, not a mapping of names to numbers",
                )
                continue
            label = plugin_label(impl.plugin_name, impl.plugin)
            figures.update({f"plugin.{label}.{key}": value for key, value in items})
        return figures

    # -- observing deliveries: per-delivery context and per-attempt hooks -----------------
    # Checked once per facade, so that with no plugin implementing them emit and every attempt
    # cost one attribute read more than before.

    @functools.cached_property
    def _observers(self) -> dict[str, list[tuple[Callable[..., Any], str]]]:
        # Each implementation as a function of the spec's arguments in order, and its
        # plugin's name: called on every attempt, so no keyword mapping is built per call.
        observers = {}
        for name in ("delivery_context", "before_attempt", "after_attempt"):
            argnames = tuple(getattr(self.pm.hook, name).spec.argnames)
            observers[name] = [
                (_positional(impl, argnames), impl.plugin_name) for impl in self._impls(name)
            ]
        return observers

    @functools.cached_property
    def captures_context(self) -> bool:
        """Whether any plugin implements `delivery_context`."""
        return bool(self._observers["delivery_context"])

    @functools.cached_property
    def observes_attempts(self) -> bool:
        """Whether any plugin implements `before_attempt` or `after_attempt`."""
        return bool(self._observers["before_attempt"] or self._observers["after_attempt"])

    @functools.cached_property
    def _probes(self) -> dict[str, Callable[[], Any]]:
        """Each plugin's `observing` implementation, by the plugin's name."""
        return {impl.plugin_name: impl.function for impl in self._impls("observing")}

    @functools.cached_property
    def asks_observing(self) -> bool:
        """Whether any plugin implements `observing` (without one, nobody is ever quiet)."""
        return bool(self._probes)

    def quiet(self) -> tuple[str, ...]:
        """The plugins whose `observing` says False now. Asked once before each attempt (when
        `asks_observing`): the answer holds for the attempt's `before_attempt` and
        `after_attempt`, and for telling its success. One that raises is logged and counts as
        observing: nothing recorded is lost to a plugin bug."""
        quiet: tuple[str, ...] = ()
        for plugin, probe in self._probes.items():
            try:
                answer = probe()
            except Exception as exc:
                _hook_failed("observing", plugin, exc)
                continue
            if answer is False:
                quiet += (plugin,)
            elif answer is not None and answer is not True:
                self._wrong_observing(plugin, answer)
        return quiet

    def _wrong_observing(self, plugin: str, answer: Any) -> None:
        # Taken as observing (nothing lost); said once per plugin, as it is asked every attempt.
        reported = self._observing_reported
        if plugin not in reported:
            reported.add(plugin)
            self._broken(
                plugin, "observing", f"returned {_kind_of(answer)}, not True, False or None"
            )
        elif inspect.iscoroutine(answer):
            answer.close()

    @functools.cached_property
    def _attempt_watch(self) -> tuple[AttemptWatchers, tuple[str, ...]]:
        """Every attempt observer, and the plugins they belong to."""
        every = AttemptWatchers(self._observers["before_attempt"], self._observers["after_attempt"])
        plugins = tuple(dict.fromkeys(plugin for _, plugin in (*every.before, *every.after)))
        return every, plugins

    def attempt_watchers(
        self, context: Mapping[str, str], quiet: tuple[str, ...] = ()
    ) -> AttemptWatchers | None:
        """Who watches an attempt of a delivery with `context` (the same watchers get
        `before_attempt` and `after_attempt`): every observer but those of the `quiet`
        plugins (`quiet()`), unless the delivery carries a context; None when that leaves
        none, and the attempt goes unwatched."""
        every, plugins = self._attempt_watch
        if context or not quiet:
            return every
        for plugin in plugins:  # a loop, not a comprehension: no function made per attempt
            if plugin not in quiet:
                break
        else:
            return None  # every plugin watching attempts is quiet
        watching = [plugin for plugin in plugins if plugin not in quiet]
        if len(watching) == len(plugins):
            return every
        return AttemptWatchers(
            [entry for entry in every.before if entry[1] in watching],
            [entry for entry in every.after if entry[1] in watching],
        )

    def _told_by(
        self, hook_name: str, observers: list[tuple[Callable[..., Any], str]], args: Any
    ) -> list[tuple[str, Any]]:
        """`_told` with the implementations to call given."""
        answers = []
        for function, plugin in observers:
            try:
                result = function(*args)
            except Exception as exc:
                self._listener_failed(hook_name, plugin, exc, args)
                continue
            if result is not None:
                answers.append((plugin, result))
        return answers

    def _strings(self, hook_name: str, answers: list[tuple[str, Any]]) -> dict[str, str]:
        """The plugins' mappings of strings merged; one that is not such a mapping is a
        plugin bug, logged and left out."""
        merged: dict[str, str] = {}
        for plugin, mapping in answers:
            if isinstance(mapping, Mapping) and all(
                isinstance(key, str) and isinstance(value, str) for key, value in mapping.items()
            ):
                merged.update(mapping)
            else:
                self._broken(
                    plugin, hook_name, f"returned {_kind_of(mapping)}, not a mapping of strings"
                )
        return merged

    def delivery_context(self, webhook: Webhook, event: Event) -> dict[str, str]:
        # `_told_by` in line: asked for every delivery emit queues, and most answer None.
        answers = None
        for function, plugin in self._observers["delivery_context"]:
            try:
                result = function(webhook, event)
            except Exception as exc:
                self._listener_failed("delivery_context", plugin, exc, (webhook, event))
                continue
            if result is not None:
                if answers is None:
                    answers = []
                answers.append((plugin, result))
        return self._strings("delivery_context", answers) if answers else {}

    def before_attempt(
        self,
        webhook: Webhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
        watchers: AttemptWatchers | None = None,
    ) -> dict[str, str]:
        """The headers the plugins add to this attempt (checked: valid names, no line
        breaks); an invalid one is that plugin's bug, logged and left out. `watchers`: the
        attempt's (`attempt_watchers`); every observer when None."""
        answers = self._told_by(
            "before_attempt",
            self._observers["before_attempt"] if watchers is None else watchers.before,
            (
                webhook,
                event,
                delivery_id,
                attempt,
                request,
                MappingProxyType(context) if context else _NO_CONTEXT,
            ),
        )
        if not answers:
            return {}
        headers = self._strings("before_attempt", answers)
        for name, value in list(headers.items()):
            if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
                del headers[name]
                self._broken(
                    "(a plugin)",
                    "before_attempt",
                    f"returned header {name!r}, not a valid header name and value",
                )
        return headers

    def after_attempt(
        self,
        webhook: Webhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
        verdict: Verdict | None,
        response: Response | None,
        error: BaseException | None,
        duration_s: float,
        watchers: AttemptWatchers | None = None,
    ) -> None:
        """Tell the attempt's `watchers` (those `before_attempt` was given) how it ended."""
        self._told_by(
            "after_attempt",
            self._observers["after_attempt"] if watchers is None else watchers.after,
            (
                webhook,
                event,
                delivery_id,
                attempt,
                request,
                MappingProxyType(context) if context else _NO_CONTEXT,
                verdict,
                response,
                error,
                duration_s,
            ),
        )


def _is_figure(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str)


def plugin_label(name: str, plugin: Any) -> str:
    """A plugin's name in stats: its entry-point name (``datadog``); for a plugin registered
    otherwise, its module's name without ``empathy_webhooks_``, or its class's name."""
    if name.isdigit():  # pluggy names an unnamed object by its id
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return name.rsplit(".", 1)[-1].removeprefix("empathy_webhooks_")


def hooks_for(pm: pluggy.PluginManager) -> Hooks:
    """The one `Hooks` facade of `pm`, kept on the manager so its caches are shared.

    A plugin registered (or unregistered) since the facade was made gets a new facade:
    building one checks the newcomer against the contract, and the cached webhook types
    would otherwise miss it.
    """
    plugins = tuple(id(plugin) for _, plugin in pm.list_name_plugin() if plugin is not None)
    cached: tuple[tuple[int, ...], Hooks] | None = getattr(pm, "_empathy_hooks", None)
    if cached is not None and cached[0] == plugins:
        return cached[1]
    hooks = Hooks(pm)
    pm._empathy_hooks = (plugins, hooks)  # type: ignore[attr-defined]
    return hooks


def plugin_infos(pm: PluginManager) -> list[PluginInfo]:
    """What `empathy-webhooks plugins` lists."""
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        types: tuple[str, ...] = ()
        if hasattr(plugin, "webhook_types"):
            types = tuple(sorted((plugin.webhook_types() or {}).keys()))
        dist, version = pm.distributions.get(name, (None, None))
        infos.append(PluginInfo(name, dist, version, types, hooks))
    return sorted(infos, key=lambda info: info.name)

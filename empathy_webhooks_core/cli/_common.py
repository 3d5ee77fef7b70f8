"""What every command shares: exit codes, output (rich, plain or JSON), loading the
configuration, building events from arguments, and learning delivery outcomes."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..config import Config, ConfigError, load_config
from ..converter import did_you_mean
from ..events import EVENT_FIELDS, Event, EventDataError
from ..plugins import PluginManager, get_plugin_manager, hookimpl, hooks_for
from ..redaction import redact_text, redact_url, redact_value, register_secrets, url_secrets

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "Outcomes",
    "Output",
    "add_config_option",
    "add_event_options",
    "event_from_args",
    "load",
]

EXIT_OK = 0
#: Something did not work out: a delivery finally failed, a signature was invalid, a plugin
#: failed to load.
EXIT_FAILED = 1
#: The command could not run as asked: bad arguments or a bad configuration file.
EXIT_USAGE = 2

EXIT_CODES_HELP = """exit codes:
  0  everything worked
  1  something failed: a delivery (after its retries), a signature, a plugin's import
  2  usage or configuration error: nothing was sent"""

CONFIG_ENV = "EMPATHY_WEBHOOKS_CONFIG"
DEFAULT_CONFIG = "webhooks.toml"


class CliError(Exception):
    """Stop the command with this message (on stderr) and exit code."""

    def __init__(self, message: str | Sequence[str], code: int = EXIT_USAGE) -> None:
        self.lines = [message] if isinstance(message, str) else list(message)
        self.code = code
        super().__init__("\n".join(self.lines))


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Output:
    """Rich tables on a terminal, aligned plain text when piped, JSON with `--json`.

    Everything printed goes through the redaction contract first, in every mode: the
    configured webhooks' secrets are registered when the configuration loads (`load`), so no
    line, cell or JSON value shows one (`listen --show-secrets` prints on its own).
    """

    def __init__(self, *, json_mode: bool = False, plain: bool = False) -> None:
        self.json = json_mode
        self.rich = (
            not json_mode
            and not plain
            and sys.stdout.isatty()
            and "NO_COLOR" not in os.environ
            and _rich_available()
        )
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def line(self, text: str = "", style: str | None = None) -> None:
        if self.json:
            return
        text = redact_text(text)
        if self.rich:
            self.console.print(text, style=style, markup=False)
        else:
            print(text, flush=True)

    def heading(self, text: str) -> None:
        self.line(text, style="bold")

    def table(
        self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        rows = [["" if cell is None else redact_text(str(cell)) for cell in row] for row in rows]
        if self.json:
            return
        if self.rich:
            from rich.table import Table

            table = Table(title=title, title_justify="left", title_style="bold")
            for column in columns:
                # Too narrow a terminal wraps a long name or URL; it never cuts one with "…".
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
            return
        if title:
            print(title)
        widths = [len(c) for c in columns]
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())
        sys.stdout.flush()

    def data(self, payload: Any) -> None:
        """The command's result as JSON (only in `--json` mode)."""
        if self.json:
            payload = redact_value(payload)
            print(json.dumps(payload, indent=2, default=str, ensure_ascii=False), flush=True)

    @staticmethod
    def error(text: str) -> None:
        print(redact_text(text), file=sys.stderr, flush=True)


# -- options ---------------------------------------------------------------------------------


def add_config_option(
    parser: argparse.ArgumentParser, *, store: bool = False, default: Any = argparse.SUPPRESS
) -> None:
    # A command's own copy of a global option has no default of its own, so that a value given
    # before the command name (kept by the main parser) is not reset.
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help=f"configuration file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG})",
    )
    if store:
        parser.add_argument(
            "--store", metavar="URL", help="store URL, overriding the file's `store`"
        )


def add_json_option(parser: argparse.ArgumentParser, *, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "--json", action="store_true", default=default, help="print the result as JSON"
    )
    parser.set_defaults(json_output=True)


def add_event_options(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    parser.add_argument("--data", metavar="JSON|@FILE", help=data_help)
    parser.add_argument("--user", metavar="ID", help="the event's user_id")
    parser.add_argument("--level", type=int, metavar="1-5", help="the event's empathy_level")
    parser.add_argument("--severity", help="the event's severity (info, low, ..., critical)")
    parser.add_argument("--classification", help="the event's classification (SENSITIVE, ...)")
    parser.add_argument("--ordering-key", metavar="KEY", help="deliver events of a key in order")


def number_option(low: int, high: int, *, integer: bool = False) -> Any:
    """An argparse `type` for a number from `low` to `high`: NaN, infinities and numbers out
    of range are a usage error naming the option (`--timeout nan` would wait for nothing,
    `--port 99999` end in a traceback)."""
    kind = "a whole number" if integer else "a number"

    def parse(text: str) -> int | float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {kind} from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = kind  # what argparse names in its own messages
    return parse


#: `--timeout`: how long a command waits for its deliveries (a day at most).
TIMEOUT_SECONDS = number_option(0, 86400)


def add_wait_timeout(parser: argparse.ArgumentParser) -> None:
    """`--timeout` of the commands that wait for deliveries (`send`, `dead-letters replay`)."""
    parser.add_argument(
        "--timeout",
        type=TIMEOUT_SECONDS,
        default=120.0,
        metavar="SECONDS",
        help="give up waiting after this long (default 120): what is left stays queued, is "
        "reported pending, and the exit code is 1",
    )


#: `--port`: 0 picks a free one.
PORT = number_option(0, 65535, integer=True)


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load(args: argparse.Namespace) -> tuple[Config, PluginManager]:
    """The configuration named by the arguments, or a `CliError` listing its problems."""
    pm = get_plugin_manager()
    path = config_path(args)
    if not path.exists():
        hint = "" if args.config else f" (pass --config FILE or set ${CONFIG_ENV})"
        raise CliError(f"error: no configuration file {str(path)!r}{hint}")
    try:
        config = load_config(path, plugin_manager=pm)
    except ConfigError as exc:
        warnings = [f"warning: {warning}" for warning in exc.warnings]
        raise CliError(
            [f"{path}: {len(exc.problems)} problem(s)", *exc.problems, *warnings]
        ) from None
    for warning in config.warnings:
        Output.error(f"warning: {warning}")
    override = getattr(args, "store", None)
    if override:
        # The stores only for --store: about 10 ms that every other command skips.
        from ..stores import store_url_problem

        problem = store_url_problem(override, hooks_for(pm).store_backends(), pm)
        if problem is not None:
            raise CliError(f"error: --store: {problem}")
        register_secrets(url_secrets(override))
    register_config_secrets(config)
    return config, pm


def register_config_secrets(config: Config) -> None:
    """Register every secret of a loaded configuration (its webhooks' and the store URL's),
    so no later output of the command shows one."""
    for webhook in config.webhooks:
        register_secrets(webhook.secret_values())
        fallback = webhook.fallback
        if fallback is not None and not isinstance(fallback, str):
            register_secrets(fallback.secret_values())
    register_secrets(url_secrets(config.store))


def read_json_argument(value: str, option: str) -> Any:
    """`--data '{"a": 1}'`, `--data @file.json` or `--data @-` (stdin)."""
    if value.startswith("@"):
        name = value[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"error: {option}: cannot read {name!r}: {exc.strerror}") from None
    else:
        text = value
    return loads_json(text, f"error: {option}")


def loads_json(text: str, where: str) -> Any:
    """JSON given to a command, read as the gateway reads a body (one helper for both): an
    object holding a key twice is refused, naming it, since which of the two values counts
    is a guess (Python keeps the last, other parsers the first) and a guess sends an alert
    with data nobody wrote. `where` starts each message (`error: --data`, `file:3`)."""
    from ..gateway.bodies import DuplicateKeyError, loads_unique

    try:
        return loads_unique(text)
    except DuplicateKeyError as exc:
        raise CliError(
            f"{where}: {exc.path}: the key {exc.key!r} appears more than once in its "
            "object; give it once"
        ) from None
    except RecursionError:
        raise CliError(f"{where}: the JSON nests too deeply") from None
    except ValueError as exc:
        raise CliError(f"{where}: not valid JSON: {exc}") from None


def event_from_args(
    event_type: str, args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
) -> Event:
    """An event from `--data`, `--user`, ... ; `defaults` (a sample's `Event` arguments) fill
    in what the command line does not say."""
    given = {
        "data": read_json_argument(args.data, "--data") if args.data else None,
        "user_id": args.user,
        "empathy_level": args.level,
        "severity": args.severity,
        "classification": args.classification,
        "ordering_key": args.ordering_key,
    }
    kwargs = dict(defaults or {})
    kwargs.update({key: value for key, value in given.items() if value is not None})
    try:
        return Event(event_type=event_type, **kwargs)
    except (EventDataError, TypeError, ValueError) as exc:
        raise CliError(f"error: {exc}") from None


#: A JSON event may also carry its id and timestamp (a replay of what was sent keeps both).
_EVENT_KEYS = (*EVENT_FIELDS, "event_id", "timestamp")


def event_from_object(obj: Any, where: str) -> Event:
    """An event from one JSON object (a line of a JSON-lines file, or an envelope)."""
    if not isinstance(obj, dict):
        raise CliError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = [key for key in obj if key not in _EVENT_KEYS]
    if unknown:
        key = unknown[0]
        raise CliError(f"{where}: unknown key {key!r}{did_you_mean(key, _EVENT_KEYS)}")
    if "event_type" not in obj:
        raise CliError(f"{where}: event_type is missing")
    try:
        return Event(**{key: value for key, value in obj.items() if value is not None})
    except (EventDataError, TypeError, ValueError) as exc:
        raise CliError(f"{where}: {exc}") from None


def shown_url(url: str) -> str:
    return redact_url(url)


# -- outcomes --------------------------------------------------------------------------------


@attrs.define
class Outcome:
    webhook: str
    event_id: str
    event_type: str
    outcome: str  # delivered, failed, skipped, pending, queued
    status: int | None = None
    attempts: int = 0
    elapsed_ms: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def detail(self) -> str:
        if self.outcome == "delivered":
            return f"{self.elapsed_ms:.0f} ms" if self.elapsed_ms is not None else ""
        return self.reason or ""


class Outcomes:
    """A plugin registered for a command's duration: it learns each delivery's final outcome
    through the same `on_success` / `on_failure` hooks any plugin implements."""

    def __init__(self, event_ids: set[str] | None = None) -> None:
        self.event_ids = event_ids
        self.results: dict[tuple[str, str], Outcome] = {}
        self.on_change: Any = None

    def _wanted(self, event: Event) -> bool:
        return self.event_ids is None or event.event_id in self.event_ids

    @hookimpl
    def on_success(self, webhook: Any, event: Event, result: Any) -> None:
        if self._wanted(event):
            self.results[(event.event_id, webhook.name)] = Outcome(
                webhook.name,
                event.event_id,
                event.event_type,
                "delivered",
                status=result.status,
                attempts=result.attempts,
                elapsed_ms=result.elapsed_ms,
            )
            if self.on_change is not None:
                self.on_change()

    @hookimpl
    def on_failure(self, webhook: Any, event: Event, error: Any) -> None:
        if self._wanted(event):
            self.results[(event.event_id, webhook.name)] = Outcome(
                webhook.name,
                event.event_id,
                event.event_type,
                "failed",
                status=error.status,
                attempts=error.attempts,
                reason=error.reason,
            )
            if self.on_change is not None:
                self.on_change()

    def register(self, pm: PluginManager) -> None:
        pm.register(self, name=f"cli-outcomes-{id(self)}")

    def unregister(self, pm: PluginManager) -> None:
        if pm.is_registered(self):
            pm.unregister(self)


class _LineFormatter(logging.Formatter):
    """`%(asctime)s %(levelname)s %(message)s`, the same text as `logging.Formatter` with
    that format, made with less work: the date and time are formatted once a second (the
    milliseconds are added to each line), and the line is put together directly. `serve`
    writes one per request, and the stock formatter's `strftime` and `%`-style template
    were about half of that line's cost. A record with an exception or a stack goes through
    the stock formatter."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self._second: int | None = None
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        second = int(record.created)
        if second != self._second:
            # `formatTime` without a datefmt: the converter (local time) and the
            # default format, to the second; the same for every record of that second.
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        record.asctime = f"{self._stamp},{int(record.msecs):03d}"  # default_msec_format
        return f"{record.asctime} {record.levelname} {record.message}"


def configure_logging(verbosity: int) -> None:
    """`-v` shows the library's retry and failure lines on stderr, `-vv` every attempt.
    The CLI is the only place that configures logging."""
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    # That format shows no caller, thread or process, which a record otherwise looks up for
    # every line (the logging HOWTO's "Optimization" settings): `serve` logs every request,
    # and a request's log line was a sixth of the gateway's CPU per accepted event.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    logger = logging.getLogger("empathy_webhooks")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)

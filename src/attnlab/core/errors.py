"""One-line errors: configuration mistakes (the key, the value given and what is allowed, exit
code 2), a diverged training run (the step and the loss, exit code 1), a full disk (the file
being written, exit code 1) and a tracking store that never took a run's metrics back (the file
that holds them, exit code 1)."""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import Any

EXIT_CONFIG_ERROR = 2
EXIT_DIVERGED = 1
EXIT_DISK_FULL = 1
EXIT_UNLOGGED = 1

# The password of a URL (``scheme://user:PASSWORD@host``) or a ``password=`` query parameter.
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)[^\s/'\"]*(@)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret)=)[^&\s'\"]*")


def mask_secrets(text: str) -> str:
    """``text`` with the passwords of the URLs in it replaced by ``***``.

    URLs inside free text (a command line, a YAML file, an error) have no parser, so this
    masks by pattern what SQLAlchemy's ``URL.render_as_string(hide_password=True)`` masks in
    one URL: ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``.
    """
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


class ConfigError(ValueError):
    """A configuration value that cannot run; printed as one line, exit code 2."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(key, value, allowed)
        self.key, self.value, self.allowed = key, value, allowed

    def __str__(self) -> str:
        return mask_secrets(f"{self.key}={self.value!r} is not allowed: {self.allowed}")


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the run stops at that step."""

    def __init__(self, step: int, loss: float):
        super().__init__(  # the message is the only arg, so repr() (a trial's error) says it too
            f"training diverged: the training loss is {loss} at step {step}; "
            "lower optim.lr or clip gradients (trainer.gradient_clip_val)"
        )
        self.step, self.loss = step, loss


class TrackingUnreachable(RuntimeError):
    """At the end of fitting, the tracking store still refuses values it failed to take during
    training; they stay in ``file`` and the run's checkpoints are intact."""

    def __init__(self, tracking_uri: str, values: int, file: Any):
        super().__init__(
            mask_secrets(
                f"the tracking store {tracking_uri} did not take {values} metric values; they "
                f"are in {file}: run the same command with resume=auto once the store answers, "
                "and they are written to the run"
            )
        )


def one_line(exc: BaseException) -> str | None:
    """A one-line description of a configuration mistake, or None if ``exc`` is not one."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    # Only a process that imported Lightning can have raised its error; importing Lightning
    # here would make the one-line error of ``attnlab train --cfg job`` wait for torch.
    lightning = sys.modules.get("lightning.fabric.utilities.exceptions")

    for cause in chain(exc):  # e.g. a ConfigError raised while Hydra instantiated a plugin,
        if isinstance(cause, ConfigError):  # or inside a resolver (OmegaConf keeps it as the
            return str(cause)  # context of the error it raises, not as the cause)
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, name = exc.missing_cfg_file.rpartition("/")
        options = ", ".join(sorted(exc.options or [])) or "no options in that group"
        return str(ConfigError(group or "config", name, f"one of {options}"))
    if isinstance(exc, OverrideParseException):
        reason = str(exc).strip().splitlines()[0]
        return f"cannot parse the override {exc.override!r}: {reason}"
    if isinstance(exc, ConfigCompositionException):
        cause = exc.__cause__ or exc.__context__  # Hydra raises it while handling the cause
        head = str(exc).strip().splitlines()[0].rstrip(".")
        unknown_key = isinstance(cause, ConfigKeyError | ConfigAttributeError)
        if unknown_key and is_dataclass(cause.object_type):
            allowed = [f.name for f in fields(cause.object_type) if not f.name.startswith("_")]
            where = re.match(r"In '([^']+)'", head)  # the config file that sets the key
            origin = f" (set in {where.group(1)})" if where else ""
            keys = ", ".join(allowed)
            return f"{cause.full_key} is not a config key{origin}; the keys there are: {keys}"
        if isinstance(cause, OmegaConfBaseException):
            detail = str(cause).strip().splitlines()[0]
            return f"{head}: {detail}"
        return head
    if (
        lightning
        and isinstance(exc, InstantiationException)
        and isinstance(exc.__cause__, lightning.MisconfigurationException)
    ):  # a combination Lightning refuses that no check here knew of
        return str(exc.__cause__).strip().splitlines()[0]
    if isinstance(exc, OmegaConfBaseException):
        key = getattr(exc, "full_key", None)
        return str(exc).strip().splitlines()[0] + (f" (key: {key})" if key else "")
    return None


def disk_full(exc: BaseException) -> str | None:
    """What a full disk stopped, as one line, if ``exc`` or what it wraps is that: an OSError
    ENOSPC (a checkpoint, a log) or SQLite's "database or disk is full" (a tracking store)."""
    for cause in chain(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            where = f" writing {cause.filename}" if cause.filename else ""
            return f"no space left on the device{where}: free some, or write elsewhere"
        if "database or disk is full" in str(cause):
            return "the tracking store's disk is full: free some, or use another store"
    return None


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it or was being handled when it was raised, and so on; each
    once: Hydra's handling can make an exception the context of its own context (a cycle)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


@contextmanager
def report_config_errors() -> Iterator[None]:
    """Turn configuration mistakes into one line on stderr and exit code 2, a diverged run, a
    full disk or unlogged metrics into one line and exit code 1; re-raise the rest."""
    try:
        yield
    except Diverged as exc:
        print(f"attnlab: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_DIVERGED) from None
    except TrackingUnreachable as exc:
        print(f"attnlab: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_UNLOGGED) from None
    except Exception as exc:
        full = disk_full(exc)
        if full:
            print(f"attnlab: {full}", file=sys.stderr)
            raise SystemExit(EXIT_DISK_FULL) from None
        line = one_line(exc)
        if line is None:
            raise
        print(f"attnlab: config error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


class Preempted(SystemExit):
    """Training stopped by a signal after saving ``last.ckpt``; exit code 128 + the signal.

    ``outer`` is the handler the process had for that signal before training (submitit's
    checkpoint-and-requeue, for one): ``hand_on`` calls it once the run is saved and ended.
    """

    def __init__(self, signum: int, outer: Any = None):
        super().__init__(128 + signum)
        self.signum, self.outer = signum, outer

    def hand_on(self) -> None:
        """Let the handler that was there before attnlab's act on the signal (it may exit)."""
        if callable(self.outer):
            self.outer(self.signum, None)

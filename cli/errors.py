"""Library errors -> one line for the user, in one table (first matching type wins).

A user error exits 1 with one clear line on stderr; click's own usage errors exit 2. The
traceback is shown only with ``ADAPTERHUB_DEBUG=1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import click

from adapterhub.errors import (
    AdapterHubError,
    AdapterNotFoundError,
    AuthenticationError,
    InvalidAdapterError,
    InvalidReferenceError,
    OfflineError,
    RegistryError,
)
from adapterhub.registry import config


def _registry(e: RegistryError) -> str:
    if e.code == "ConnectionError" or e.status is None:
        return str(e)
    return f"the registry refused: {e}" + (f" [{e.code}]" if e.code else f" [HTTP {e.status}]")


def _os_error(e: OSError) -> str:
    return f"{e.strerror or e}: {e.filename}" if e.filename else str(e)


# (error type, message) — checked in order, so subclasses come before their bases
MESSAGES: list[tuple[type[BaseException], Callable]] = [
    (OfflineError, str),
    (AuthenticationError, lambda e: f"not authorised: {e}"),
    (AdapterNotFoundError, lambda e: f"not found: {e}"),
    (RegistryError, _registry),
    (InvalidReferenceError, str),
    (InvalidAdapterError, lambda e: f"invalid adapter: {e}"),
    (AdapterHubError, str),
    (OSError, _os_error),
]


def message_for(exc: BaseException) -> str:
    for kind, render in MESSAGES:
        if isinstance(exc, kind):
            return render(exc)
    return f"internal error: {type(exc).__name__}: {exc} (rerun with ADAPTERHUB_DEBUG=1 for the traceback)"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


class HubGroup(click.Group):
    """The root group: turns any error raised below it into one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if config.debug():
                raise
            raise click.ClickException(message_for(exc)) from None

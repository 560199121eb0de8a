"""What every command module shares: turning user errors into one clear line and exit status 2."""

from __future__ import annotations

import functools
import sqlite3
import sys
import warnings
from typing import Any, Callable

import click

from bench.errors import BenchError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a BenchError into one clear line on stderr and exit status 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except sqlite3.OperationalError as exc:  # a store problem the store did not already explain
            click.echo(f"error: results store: {exc}", err=True)
            sys.exit(2)

    return wrapper


def show_plugin_warnings_as_lines() -> None:
    """An outside plugin that fails to load is one `warning:` line on stderr (naming its distribution)."""
    from bench.registry import PluginLoadWarning

    original = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, PluginLoadWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    if getattr(original, "__name__", "") != "show":
        warnings.showwarning = show

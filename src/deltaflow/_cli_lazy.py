"""Sub-commands imported only when they run, so ``deltaflow --help`` stays instant.

A capability's commands live in its own package (``deltaflow.serving``, ``deltaflow.projects``) and are
named here as ``"module:attribute"``; click lists them with the rest and imports the module the
first time one of them is looked up.
"""

from __future__ import annotations

import importlib
from typing import Optional

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A :class:`click.Group` whose ``lazy_commands`` (name → ``"module:attribute"``) load on first use."""

    def __init__(self, *args: object, lazy_commands: Optional[dict[str, str]] = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands: dict[str, str] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

"""A command group that falls back to one of its commands.

``billing-api audit --company C`` lists a partner's events, as it always has, while
``billing-api audit prune`` is a command of its own: arguments that do not start with a
command name go to the default command.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


class DefaultCommandGroup(TyperGroup):
    """Run ``default_command`` when the first argument is not a command name or ``--help``."""

    default_command = "list"

    # ctx: typer's vendored click Context, which it does not export under a public name.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

"""docs/operations.md works as written: its commands exist, its sed fills in every placeholder
of the nginx file, its settings file names real settings, its units are the repository's."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from billing_api.cli import app
from billing_api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "operations.md").read_text()
RUNBOOK = DOC[DOC.index("# Part 1: runbook"):DOC.index("# Part 2: decisions")]


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", RUNBOOK, re.DOTALL)


def billing_api_commands() -> set[tuple[str, ...]]:
    """Each `billing-api WORD [WORD]` the runbook's shell blocks run (subcommands only)."""
    found = set()
    for block in shell_blocks():
        block = block.replace("sudo -u billing-api ", "")  # the user, not the command
        for match in re.finditer(r"(?:^|\s)billing-api((?: [a-z][a-z-]*){1,2})", block):
            words = tuple(match.group(1).split())
            found.add(words)
    return found


def test_every_command_the_runbook_runs_exists() -> None:
    commands = billing_api_commands()
    assert {("db", "upgrade"), ("db", "check"), ("import",), ("users", "add"),
            ("companies", "create")} <= {c[:2] if c[0] in ("db", "users", "companies")
                                          else c[:1] for c in commands}
    for words in sorted(commands):
        # A second word may be an argument, not a subcommand: try the longest that exists.
        for size in (len(words), 1):
            shown = CliRunner().invoke(app, [*words[:size], "--help"])
            if shown.exit_code == 0:
                break
        assert shown.exit_code == 0, (words, shown.output)


def test_the_sed_line_fills_in_every_nginx_placeholder() -> None:
    site = (ROOT / "deploy" / "nginx" / "billing-api.conf").read_text()
    placeholders = set(re.findall(r"@([A-Z_]+)@", site))
    filled = set(re.findall(r"s\|@([A-Z_]+)@\|", RUNBOOK))
    assert placeholders == filled and len(placeholders) == 6


def test_the_settings_file_names_real_settings() -> None:
    block = next(b for b in shell_blocks() if "/etc/billing-api/billing-api.env —" in b)
    names = re.findall(r"^BILLING_API_([A-Z_]+)=", block, re.MULTILINE)
    fields = {name.upper() for name in Settings.model_fields}
    assert names and set(names) <= fields, set(names) - fields


def test_the_units_and_files_the_runbook_copies_exist() -> None:
    for path in re.findall(r"/opt/billing-api/src/(deploy/[\w./{},-]+)", RUNBOOK):
        if "{" in path:  # billing-api-bill.{service,timer}
            stem, rest = path.split("{")
            variants = [stem + v for v in rest.rstrip("}").split(",")]
        else:
            variants = [path]
        for variant in variants:
            assert (ROOT / variant).is_file(), variant

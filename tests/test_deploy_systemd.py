"""deploy/systemd's units pass ``systemd-analyze verify`` and say what the docs say.

``systemd-analyze verify`` works without systemd as PID 1 (a container): it loads the unit
files, parses every directive and checks that each ``ExecStart`` binary exists and is
executable. The units name the installed path ``/opt/billing-api/venv/bin/billing-api``;
the test verifies copies pointing at this checkout's ``billing-api`` instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from billing_api.cli.bill import EXIT_NOTHING_TO_DO
from billing_api.settings import Settings
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
NAMES = ("billing-api.service", "billing-api-bill.service", "billing-api-bill.timer",
         "billing-api-worker.service")
INSTALLED = "/opt/billing-api/venv/bin/billing-api"


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        skip_or_fail("systemd-analyze is not installed (Debian package systemd)")
    assert tool is not None
    return tool


def verify(folder: Path, *names: str) -> subprocess.CompletedProcess[str]:
    # --man=no: the Documentation= lines need no man pages installed.
    return subprocess.run([analyze(), "verify", "--man=no", *names], cwd=folder,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def units(tmp_path: Path) -> Path:
    binary = Path(sys.executable).parent / "billing-api"
    assert binary.is_file()
    for name in NAMES:
        text = (UNITS / name).read_text()
        if name.endswith(".service"):
            assert INSTALLED in text
        (tmp_path / name).write_text(text.replace(INSTALLED, str(binary)))
    return tmp_path


def test_the_units_verify_cleanly(units: Path) -> None:
    result = verify(units, *NAMES)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_verify_catches_a_broken_unit_here(units: Path) -> None:
    """The check is real in this environment: a bad directive and a missing binary show."""
    text = (units / "billing-api.service").read_text()
    (units / "broken.service").write_text(
        text.replace("Restart=on-failure", "Restart=sometimes\nBogusKey=1")
        .replace(str(Path(sys.executable).parent / "billing-api"), "/nonexistent/billing-api"))
    result = verify(units, "broken.service")
    assert result.returncode != 0
    assert "BogusKey" in result.stderr and "/nonexistent/billing-api" in result.stderr


def test_the_timer_bills_the_previous_month_on_the_first_in_the_distributors_timezone(
        units: Path) -> None:
    timer = (units / "billing-api-bill.timer").read_text()
    calendar = re.search(r"^OnCalendar=(.+)$", timer, re.MULTILINE)
    assert calendar is not None
    timezone = Settings(database_url="sqlite://").timezone
    assert calendar.group(1).endswith(" " + timezone)
    # Shown in the distributor's timezone: early on the 1st there, whatever the host's zone.
    shown = subprocess.run([analyze(), "calendar", "--iterations=3", calendar.group(1)],
                           env={"TZ": timezone, "PATH": "/usr/bin:/bin"}, capture_output=True,
                           text=True, timeout=30, check=True).stdout
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d): \w+ (\d{4}-\d{2}-\d{2}) (\d\d):", shown)
    assert len(elapses) == 3, shown
    assert all(day.endswith("-01") and hour == "03" for day, hour in elapses), shown
    assert "Persistent=true" in timer
    service = (units / "billing-api-bill.service").read_text()
    assert re.search(r"^ExecStart=\S+ bill --period previous$", service, re.MULTILINE)
    assert f"SuccessExitStatus={EXIT_NOTHING_TO_DO}" in service
    server = (units / "billing-api.service").read_text()
    assert "serve --host 127.0.0.1 --port 8000 --workers 2" in server
    # systemd must wait longer than the server lets downloads finish.
    graceful = int(re.search(r"--graceful-timeout (\d+)", server).group(1))  # type: ignore[union-attr]
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", server, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert stop > graceful


def test_the_operators_wrapper_reads_the_service_settings_verbatim(tmp_path: Path) -> None:
    """deploy/bin/billing-api: the env file's values reach the command unchanged, even with
    characters a shell would act on; comments and blank lines are skipped."""
    env_file = tmp_path / "billing-api.env"
    url = "postgresql://billing:p%40ss@db.example:5432/billing?sslmode=require&connect_timeout=5"
    env_file.write_text(f"# settings\n\nBILLING_API_DATABASE_URL={url}\n"
                        "BILLING_API_SECRET_KEY=a b;c$HOME`id`\n"
                        "BILLING_API_TIMEZONE=Europe/Amsterdam")
    shown = subprocess.run(
        [str(ROOT / "deploy" / "bin" / "billing-api")], capture_output=True, text=True,
        timeout=30, check=True,
        env={"PATH": "/usr/bin:/bin", "BILLING_API_ENV_FILE": str(env_file),
             "BILLING_API_BIN": "/usr/bin/env"}).stdout.splitlines()
    assert f"BILLING_API_DATABASE_URL={url}" in shown
    assert "BILLING_API_SECRET_KEY=a b;c$HOME`id`" in shown
    assert "BILLING_API_TIMEZONE=Europe/Amsterdam" in shown  # no final newline needed
    env_file.write_text("# a pasted secret, not a setting:\nsecret-value-here\n")
    bad = subprocess.run([str(ROOT / "deploy" / "bin" / "billing-api")], capture_output=True,
                         text=True, timeout=30, check=False,
                         env={"PATH": "/usr/bin:/bin", "BILLING_API_ENV_FILE": str(env_file),
                              "BILLING_API_BIN": "/usr/bin/env"})
    assert bad.returncode == 2 and "line 2 is not KEY=value" in bad.stderr
    assert "secret-value-here" not in bad.stderr


def test_a_variable_given_on_the_command_line_wins_over_the_settings_file(
        tmp_path: Path) -> None:
    env_file = tmp_path / "billing-api.env"
    env_file.write_text("BILLING_API_DATABASE_URL=postgresql://live/billing\n"
                        "BILLING_API_TIMEZONE=Europe/Amsterdam\n")
    shown = subprocess.run(
        [str(ROOT / "deploy" / "bin" / "billing-api")], capture_output=True, text=True,
        timeout=30, check=True,
        env={"PATH": "/usr/bin:/bin", "BILLING_API_ENV_FILE": str(env_file),
             "BILLING_API_BIN": "/usr/bin/env",
             "BILLING_API_DATABASE_URL": "sqlite:////tmp/restored.db"}).stdout.splitlines()
    assert "BILLING_API_DATABASE_URL=sqlite:////tmp/restored.db" in shown
    assert "BILLING_API_DATABASE_URL=postgresql://live/billing" not in shown
    assert "BILLING_API_TIMEZONE=Europe/Amsterdam" in shown

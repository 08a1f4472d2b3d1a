"""The secret and the configuration, as an operator meets them: the real CLI in a subprocess.

No usable default secret (issue 11): unset, a random one is generated once per database into a
0600 file and reused; a short or published one is refused; production needs it explicitly. A
download link signed with the old public default, or naming a key by its row id, gets nowhere.
Refuse early and clearly (issue 16): every command refuses a bad configuration with one line
on stderr and exit 2, before anything is logged, and `serve` logs what it runs with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links
from billing_api.settings import (
    DEVELOPMENT_SECRET,
    ConfigurationError,
    Settings,
    load_settings,
    secret_file_for,
)
from tests.access_helpers import denied_reasons, make_partner, test_app
from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.test_ops import serve_process

ROOT = Path(__file__).resolve().parents[1]
WHOAMI = "/api/v4/whoami"


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The environment of a fresh shell: no BILLING_API_* of the caller's, a private
    XDG_DATA_HOME (a PostgreSQL database's generated secret goes there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_API_")}
    return env | {"XDG_DATA_HOME": str(tmp_path / "xdg"), "NO_COLOR": "1", **values}


def cli(env: dict[str, str], *args: str, stdin: str = "",
        umask: int = -1) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_api", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
                          umask=umask)


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "serving on" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- the generated secret ---------------------------------------------------------------------


def test_generated_secret_is_private_kept_and_reused(tmp_path: Path) -> None:
    database = tmp_path / "data" / "billing.db"
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=f"sqlite:///{database}")
    # umask 0 would make an ordinary open() world-readable: the file must be 0600 regardless.
    first = cli(env, "db", "upgrade", umask=0)
    assert first.returncode == 0, first.stderr
    secret_file = database.with_name("billing.db.secret")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    value = secret_file.read_text().strip()
    assert len(value.encode()) >= 32
    assert [p.name for p in secret_file.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert cli(env, "companies", "list").returncode == 0
    assert secret_file.read_text().strip() == value  # reused, not replaced
    settings = Settings(database_url=f"sqlite:///{database}")
    assert settings.secret_key.get_secret_value() == value
    assert settings.secret_source == f"generated file {secret_file}"
    assert value not in first.stderr


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    script = ("from billing_api.settings import Settings; import hashlib, sys; "
              "s = Settings().secret_key.get_secret_value().encode(); "
              "print(hashlib.sha256(s).hexdigest())")
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=url)
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                             text=True) for _ in range(4)]
    seen = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert len(seen) == 1 and all(len(s) == 64 for s in seen)


def test_postgres_secret_lives_in_the_user_data_dir(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = secret_file_for("postgresql://billing:pw@db.example:5432/billing")
    assert path is not None and path.parent == tmp_path / "xdg" / "billing-api"
    assert "pw" not in path.name and path.name.endswith(".secret")
    assert secret_file_for("sqlite://") is None  # in memory: a secret for this process only


def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "billing.db"
    Settings(database_url=f"sqlite:///{database}")
    secret_file = database.with_name("billing.db.secret")
    secret_file.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_settings(database_url=f"sqlite:///{database}")


@pytest.mark.parametrize("secret, needle", [
    ("short-secret", "at least 32 bytes"),
    ("x" * 31, "(it has 31)"),
    (DEVELOPMENT_SECRET, "published development value"),
])
def test_weak_secrets_are_refused_by_every_command(tmp_path: Path, secret: str,
                                                   needle: str) -> None:
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=f"sqlite:///{tmp_path / 'b.db'}",
                    BILLING_API_SECRET_KEY=secret)
    for args in (("keys", "list", "--company", "1"), ("serve", "--port", "1")):
        result = cli(env, *args)
        assert_one_line_refusal(result, "BILLING_API_SECRET_KEY", needle)
        assert secret not in result.stderr or secret == DEVELOPMENT_SECRET
    assert load_settings(database_url="sqlite://", secret_key=TEST_SECRET)  # 32 bytes: fine


# --- production refuses early -----------------------------------------------------------------

PRODUCTION_COMMANDS = [
    ("serve", "--port", "1"),
    ("keys", "create", "--company", "Acme", "--environment", "production", "--name", "erp"),
    ("keys", "revoke", "--company", "Acme", "1"),
    ("api", "enable", "--company", "Acme", "--as", "a@acme.example", "--password-stdin"),
    ("api", "distributor-enable", "--company", "Acme", "--reason", "test"),
    ("whitelist", "add", "--company", "Acme", "127.0.0.1"),
    ("bill", "--period", "2026-01"),
    ("import", "does-not-matter.json"),
    ("demo", "--customers", "1"),
    ("db", "upgrade"),
    ("audit", "--company", "Acme"),
]


def test_production_refuses_a_generated_secret_in_every_command(tmp_path: Path) -> None:
    """Production without BILLING_API_SECRET_KEY: one line saying what to set, exit 2, no
    traceback, before "serving on" — even when a generated file exists (made in development
    on the same database), since several workers and hosts must share one secret."""
    database = tmp_path / "billing.db"
    url = f"sqlite:///{database}"
    assert cli(clean_env(tmp_path, BILLING_API_DATABASE_URL=url), "db", "upgrade").returncode == 0
    assert database.with_name("billing.db.secret").exists()
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=url,
                    BILLING_API_ENVIRONMENT_NAME="production")
    for args in PRODUCTION_COMMANDS:
        result = cli(env, *args, stdin="pw\n")
        assert_one_line_refusal(result, "set BILLING_API_SECRET_KEY", "production")
    env["BILLING_API_SECRET_KEY"] = TEST_SECRET
    assert cli(env, "companies", "list").returncode == 0  # with it set, production works


@pytest.mark.parametrize("variable, value, needle", [
    ("BILLING_API_DATABASE_POOL_SIZE", "0", "BILLING_API_DATABASE_POOL_SIZE"),
    ("BILLING_API_DATABASE_POOL_SIZE", "many", "BILLING_API_DATABASE_POOL_SIZE"),
    ("BILLING_API_TRUSTED_PROXIES", "10.0.0.0/8,proxy.example", "'proxy.example'"),
    ("BILLING_API_METRICS_ALLOW", "everyone", "BILLING_API_METRICS_ALLOW"),
    ("BILLING_API_TIMEZONE", "Mars/Olympus", "BILLING_API_TIMEZONE"),
    ("BILLING_API_RATE_LIMIT_PER_MINUTE", "-1", "BILLING_API_RATE_LIMIT_PER_MINUTE"),
    ("BILLING_API_REDIS_URL", "localhost:6379", "BILLING_API_REDIS_URL"),
    ("BILLING_API_DATABASE_URL", "not a url", "BILLING_API_DATABASE_URL"),
    ("BILLING_API_DATABASE_URL", "postgresql://billing:hunter2@127.0.0.1:1/billing",
     "cannot open the database"),
])
def test_a_configuration_error_is_one_line_in_every_command(tmp_path: Path, variable: str,
                                                           value: str, needle: str) -> None:
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=f"sqlite:///{tmp_path / 'b.db'}",
                    BILLING_API_SECRET_KEY=TEST_SECRET) | {variable: value}
    # serve for each; every other command builds its settings the same way (see the
    # production test for the whole list).
    commands = [("serve", "--port", "1")]
    if variable == "BILLING_API_DATABASE_POOL_SIZE":
        commands += [("bill", "--period", "2026-01"), ("keys", "list", "--company", "1")]
    for args in commands:
        result = cli(env, *args)
        assert_one_line_refusal(result, "configuration", needle)
        assert "hunter2" not in result.stderr and TEST_SECRET not in result.stderr


# --- what serve says it runs with ---------------------------------------------------------------


@pytest.fixture
def served(database_url: str, tmp_path: Path, engine: object) -> Iterator[tuple[str, Path]]:
    """``billing-api serve`` on the test database with no secret set (development): yields
    its base URL and its log file."""
    env = clean_env(tmp_path, BILLING_API_DATABASE_URL=database_url,
                    BILLING_API_TRUSTED_PROXIES="10.0.0.0/8", BILLING_API_DATABASE_POOL_SIZE="3")
    with serve_process(tmp_path, env, "--log-format", "text") as (process, base, log_path):
        yield base, log_path
        process.terminate()  # a clean stop, as before; the helper kills only a straggler
        process.wait(timeout=30)


def test_serve_logs_its_configuration_but_no_secret(served: tuple[str, Path], tmp_path: Path,
                                                    database_url: str) -> None:
    _, log_path = served
    log = log_path.read_text()
    url = make_url(database_url)
    secret_file = secret_file_for(database_url)
    if url.get_backend_name() == "postgresql":
        # The generated secret of a server database lives in the (test's) user data dir.
        assert secret_file is not None
        secret_file = tmp_path / "xdg" / "billing-api" / secret_file.name
    assert secret_file is not None
    secret = secret_file.read_text().strip()
    assert f"secret: generated file {secret_file}" in log
    assert secret not in log
    assert f"database: {url.render_as_string(hide_password=True)}" in log
    if url.password:
        assert f":{url.password}@" not in log and ":***@" in log
    assert "database pool: 3 connections per worker" in log
    assert "rate limits: in-process" in log
    assert "trusted proxies: 10.0.0.0/8" in log
    assert "read replica: none" in log
    assert "portal login: password" in log
    assert log.index("secret:") < log.index("serving on")


# --- hole 2: a link forged from public knowledge ------------------------------------------------


def _old_style_token(secret: str, key_id: int, path: str, query: str, expires: int) -> str:
    """What anyone could compute before: the public default secret, the key's row id."""
    signing = hmac.new(secret.encode(), b"billing-api/download-link/v1", hashlib.sha256).digest()
    mac = hmac.new(signing, f"{key_id}\n{expires}\n{path}\n{query}".encode(),
                   hashlib.sha256).digest()
    return f"{key_id}.{expires}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_a_link_forged_without_the_secret_is_refused(
        factory: sessionmaker[Session], database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack of issue 11: from a whitelisted address, with no key, compute a token from
    the old public default secret and the sequential key id. Now the server runs on a
    generated secret, and a token names the key by its digest: both forgeries are refused,
    while a link the server itself signed works."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = Settings(database_url=database_url, redis_url=None)  # no secret: generated
    assert settings.secret_source.startswith("generated")
    partner = make_partner(factory, settings)  # API on, 127.0.0.1 whitelisted
    expires = int(time.time()) + 600
    query = "format=json"
    forged = [
        _old_style_token(DEVELOPMENT_SECRET, partner.key_id, WHOAMI, query, expires),
        *(_old_style_token(DEVELOPMENT_SECRET, key_id, WHOAMI, query, expires)
          for key_id in range(1, 4)),
    ]
    public = Settings(database_url="sqlite://", secret_key=TEST_SECRET)
    # Even knowing the key's digest, which no page shows, the signature needs the secret.
    forged.append(links.sign_link(public, keys.digest(settings, partner.secret), WHOAMI,
                                  [("format", "json")]))
    genuine = links.signed_url(settings, keys.digest(settings, partner.secret), WHOAMI,
                               [("format", "json")])
    with serve(test_app(settings)) as base:
        for token in forged:
            answer = httpx.get(f"{base}{WHOAMI}", params={"format": "json", "token": token},
                               timeout=10)
            assert answer.status_code == 401 and answer.json()["code"] == "bad_token"
        ok = httpx.get(base + genuine, timeout=10)
    assert ok.status_code == 200 and ok.json()["key_id"] == partner.key_id
    assert str(partner.key_id) != genuine.split("token=")[1].split(".")[0]
    assert "bad_token" in denied_reasons(factory)

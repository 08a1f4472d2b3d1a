"""The access commands through typer's CliRunner against the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from billing_api.cli import app, context
from billing_api.settings import Settings


@pytest.fixture
def run(settings: Settings, engine: object,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("BILLING_API_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BILLING_API_SECRET_KEY", settings.secret_key.get_secret_value())
    context.settings.cache_clear()
    context.engine.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None, ok: bool = True) -> tuple[str, str]:
        result = runner.invoke(app, list(args), input=stdin)
        assert (result.exit_code == 0) == ok, (args, result.stdout, result.stderr)
        return result.stdout, result.stderr

    yield invoke
    context.engine().dispose()
    context.settings.cache_clear()
    context.engine.cache_clear()


def test_access_workflow(run: object) -> None:
    invoke = run  # type: ignore[assignment]
    out, _ = invoke("companies", "create", "--name", "Acme BV", "--admin-email", "a@acme.example")
    admin_password = out.strip()
    assert len(admin_password) >= 16
    invoke("companies", "create", "--name", "Beta BV", "--admin-email", "b@beta.example",
           "--password-stdin", stdin="s3cret-password\n")
    out, _ = invoke("companies", "list")
    lines = out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["Acme BV", "Beta BV"]
    acme_id = lines[0].split("\t")[0]
    clerk_password = invoke("users", "add", "--company", acme_id,
                            "--email", "c@acme.example")[0].strip()
    admin = ("--as", "a@acme.example", "--password-stdin")
    clerk = ("--as", "c@acme.example", "--password-stdin")

    _, err = invoke("api", "enable", "--company", "Acme BV", *clerk, stdin=clerk_password,
                    ok=False)
    assert "not the Account Administrator" in err
    invoke("api", "enable", "--company", "Acme BV", "--as", "b@beta.example",
           "--password-stdin", stdin="s3cret-password\n", ok=False)
    invoke("api", "enable", "--company", "Acme BV", *admin, stdin=admin_password + "\n")

    invoke("keys", "create", "--company", "Acme BV", "--environment", "sandbox", "--name", "x",
           *clerk, stdin=clerk_password, ok=False)
    invoke("users", "grant-api", "--company", "Acme BV", "--email", "c@acme.example",
           *admin, stdin=admin_password)
    out, err = invoke("keys", "create", "--company", "Acme BV", "--environment", "production",
                      "--name", "erp", "--expires", "2099-12-31", *clerk, stdin=clerk_password)
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("nwb_live_") and secret not in err
    out, _ = invoke("keys", "list", "--company", "Acme BV")
    fields = out.strip().split("\t")
    assert len(fields) == 8 and fields[1:4] == ["erp", "production", secret[:15]]
    assert fields[7] == "active" and secret not in out
    invoke("keys", "revoke", "--company", "Acme BV", fields[0])
    assert invoke("keys", "list", "--company", "Acme BV")[0].strip().endswith("revoked")

    invoke("whitelist", "add", "--company", "Acme BV", "192.0.2.0/24", "--description", "office")
    invoke("whitelist", "add", "--company", "Acme BV", "192.0.2.0/24", ok=False)
    invoke("whitelist", "add", "--company", "Acme BV", "0.0.0.0/0", ok=False)
    invoke("whitelist", "add", "--company", "Acme BV", "::/0", "--allow-any")
    out, _ = invoke("whitelist", "list", "--company", "Acme BV")
    assert [line.split("\t")[1:] for line in out.splitlines()] == [
        ["192.0.2.0/24", "office"], ["::/0", ""]]
    invoke("whitelist", "remove", "--company", "Acme BV", out.splitlines()[1].split("\t")[0],
           *clerk, stdin=clerk_password)

    invoke("users", "deactivate", "--company", "Acme BV", "--email", "a@acme.example", ok=False)
    invoke("users", "revoke-api", "--company", "Acme BV", "--email", "c@acme.example",
           *admin, stdin=admin_password)
    out, _ = invoke("audit", "--company", "Acme BV", "--since", "2020-01-01")
    events = [line.split("\t")[1] for line in out.splitlines()]
    assert events[0] == "permission_withdrawn" and "api_enabled" in events
    assert {"key_created", "key_revoked", "whitelist_added", "whitelist_removed"} <= set(events)
    assert secret not in out

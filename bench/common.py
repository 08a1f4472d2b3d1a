"""What the benchmarks share: demo databases, the CLI, a real server, memory, timing.

Every benchmark measures a ratio inside one run (subject and floor timed back to back,
interleaved, best of N), because absolute figures on a shared 2-core machine are noisy. The
machine's load is recorded next to every figure.

Databases are built once and reused: SQLite files under ``bench/.data/`` (gitignored) and
PostgreSQL databases named ``bench_*`` on the server of ``BILLING_API_BENCH_POSTGRES_URL``
(default: the test suite's local server). A database counts as built only when its marker
file under ``bench/.data/`` exists, so an interrupted build is rebuilt, never half reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
TODAY = "2026-11-29"  # fixed, so that every build of a size holds the same rows
# Demo: lines of one kind (purchase or customer) per production customer over the 4 billed
# months, so a database of N customers gives documents of about 9.8 × N lines.
LINES_PER_CUSTOMER = 9.81
DEMO_MONTHS = 4
POSTGRES_ADMIN_URL = os.environ.get(
    "BILLING_API_BENCH_POSTGRES_URL", "postgresql+psycopg://billing:billing@127.0.0.1:5432/postgres"
)
# A throwaway benchmark pepper (32 bytes at least, like any secret). Keys cached with a built
# database under another pepper are made again (see api_key).
SECRET = "bench-secret-key-0123456789abcdefghij"  # noqa: S105
PARTNER = "Northwind IT Services BV"
BACKENDS = ("sqlite", "postgresql")
# --quick sizes: small enough that bench/run.py --quick, database builds included, takes about
# five minutes on 2 cores; the full run uses 1,000,000-line documents.
QUICK_LINES = 20_000


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_load() -> dict[str, Any]:
    """The 1/5/15-minute load averages and the core count, to print next to figures."""
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2),
            "cores": os.cpu_count()}


def load_text() -> str:
    load = machine_load()
    return (f"load {load['load1']:.2f} {load['load5']:.2f} {load['load15']:.2f} "
            f"on {load['cores']} cores")


def ensure_tool(binary: str, package: str) -> str | None:
    """The path of a Debian tool, installed with apt-get when missing and running as root;
    None when it cannot be had (the caller says what it skips)."""
    import shutil

    found = shutil.which(binary)
    if found or os.geteuid() != 0:
        return found
    say(f"installing {package} from Debian …")
    for argv in (["apt-get", "install", "-y", "-qq", package],
                 ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(argv, check=False, capture_output=True,
                       env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which(binary):
            break
    return shutil.which(binary)


# --- databases --------------------------------------------------------------------------------


def sqlalchemy_url_to_libpq(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…`` for psycopg and psql."""
    return "postgresql://" + url.split("://", 1)[1]


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(sqlalchemy_url_to_libpq(POSTGRES_ADMIN_URL), connect_timeout=3):
            return True
    except Exception:  # any failure means "not available here"
        return False


def postgres_url(database: str) -> str:
    base, _ = POSTGRES_ADMIN_URL.rsplit("/", 1)
    return f"{base}/{database}"


def _postgres_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(sqlalchemy_url_to_libpq(POSTGRES_ADMIN_URL), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Database:
    """A benchmark database: its SQLAlchemy URL, backend and what identifies it."""

    name: str
    backend: str
    url: str

    @property
    def marker(self) -> Path:
        return DATA / f"{self.name}.{self.backend}.built"

    @property
    def sqlite_path(self) -> Path:
        return DATA / f"{self.name}.db"

    @property
    def server_name(self) -> str:
        """The database's name on the PostgreSQL server (``name`` plus the checkout's tag)."""
        return self.url.rsplit("/", 1)[1]

    def env(self, **extra: str) -> dict[str, str]:
        return os.environ | {
            "BILLING_API_DATABASE_URL": self.url,
            "BILLING_API_SECRET_KEY": SECRET,
            "BILLING_API_RATE_LIMIT_PER_MINUTE": "100000000",
            "NO_COLOR": "1",
            **extra,
        }

    def is_built(self) -> bool:
        return self.marker.exists()

    def built_info(self) -> dict[str, Any]:
        return json.loads(self.marker.read_text()) if self.marker.exists() else {}

    def drop(self) -> None:
        self.marker.unlink(missing_ok=True)
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        else:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{self.server_name}" WITH (FORCE)')

    def create_empty(self) -> None:
        self.drop()
        DATA.mkdir(parents=True, exist_ok=True)
        if self.backend == "postgresql":
            _postgres_admin(f'CREATE DATABASE "{self.server_name}"')
        cli(self.env(), "db", "upgrade")

    def mark_built(self, **info: Any) -> None:
        self.marker.write_text(json.dumps(info))


# PostgreSQL databases live on a server that several checkouts share, while the marker saying
# one is built lives in the checkout: named per checkout, one checkout's build cannot drop
# another's database (and its benchmark key) mid-run.
CHECKOUT_TAG = hashlib.sha256(str(ROOT).encode()).hexdigest()[:6]


def database(name: str, backend: str) -> Database:
    if backend == "sqlite":
        return Database(name, backend, f"sqlite:///{DATA / f'{name}.db'}")
    return Database(name, backend, postgres_url(f"{name}_{CHECKOUT_TAG}"))


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run ``billing-api ARGS`` and return its stdout; exit with its stderr on failure."""
    result = subprocess.run(
        [sys.executable, "-m", "billing_api", *args], env=env, input=stdin,
        capture_output=True, text=True, check=False, timeout=7200,
    )
    if result.returncode != 0:
        raise SystemExit(f"billing-api {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def build_world(db: Database, customers: int, *, bill: bool) -> dict[str, Any]:
    """Fill an empty database with the demo world of ``customers`` production customers
    (the product's own generator), billed for ``DEMO_MONTHS`` months unless ``bill`` is false."""
    import datetime as dt

    from billing_api.db import make_engine, make_session_factory
    from billing_api.demo.generator import build_demo
    from billing_api.environments import Environment

    db.create_empty()
    engine = make_engine(db.url)
    started = time.perf_counter()
    try:
        result = build_demo(make_session_factory(engine), customers=customers,
                            months=DEMO_MONTHS, today=dt.date.fromisoformat(TODAY),
                            environments=(Environment.PRODUCTION,), bill=bill)
    finally:
        engine.dispose()
    return {"customers": customers, "lines": sum(r.lines for r in result.runs),
            "build_seconds": round(time.perf_counter() - started, 1)}


def demo_database(lines: int, backend: str) -> Database:
    """A billed demo database whose ``invoices`` document has about ``lines`` price lines
    (production only; built once, then reused)."""
    db = database(f"bench_export_{lines}", backend)
    if db.is_built():
        return db
    customers = max(1, round(lines / LINES_PER_CUSTOMER))
    say(f"building a {backend} demo database: ~{lines} lines per document, {customers} "
        "customers …")
    info = build_world(db, customers, bill=True)
    db.mark_built(**info)
    say(f"built {db.name} ({backend}): {info['lines']} lines in {info['build_seconds']} s")
    return db


def api_key(db: Database) -> tuple[int, str]:
    """The demo partner's id and a production key, 127.0.0.1 whitelisted, made once through
    the CLI and remembered with the database (benchmark data only)."""
    info = db.built_info()
    if "secret" in info and info.get("pepper") == SECRET:
        return int(info["partner_id"]), str(info["secret"])
    env = db.env()
    partner_id = int(cli(env, "companies", "list").split("\t", 1)[0])
    # The demo's administrator password is not kept with the database: switch the API on as
    # the distributor (audited with the reason) and create the key as the operator.
    cli(env, "api", "distributor-enable", "--company", PARTNER, "--reason", "benchmark set-up")
    if "127.0.0.1" not in cli(env, "whitelist", "list", "--company", PARTNER):
        cli(env, "whitelist", "add", "--company", PARTNER, "127.0.0.1")
    secret = cli(env, "keys", "create", "--company", PARTNER, "--environment", "production",
                 "--name", f"bench-{time.time_ns()}").strip()
    if db.is_built():
        db.mark_built(**(info | {"partner_id": partner_id, "secret": secret, "pepper": SECRET}))
    return partner_id, secret


# --- a real server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def wait_ready(url: str, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server at {url} did not start")
        time.sleep(0.1)


@contextlib.contextmanager
def server(env: dict[str, str], command: list[str] | None = None) -> Iterator[Server]:
    """``billing-api serve`` (or ``command`` with ``{port}``) in its own process."""
    port = free_port()
    argv = ([sys.executable, "-m", "billing_api", "serve", "--port", str(port)]
            if command is None else [part.format(port=port) for part in command])
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/healthz")
        yield Server(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.pid)


DATE_RANGE = {"startDate": "20000101", "endDate": "20991231"}


def download(base: str, path: str, secret: str, fmt: str,
             params: dict[str, str] | None = None, *,
             marker: bytes | None = None) -> tuple[int, int, float]:
    """Stream one document over HTTP; (lines, bytes, seconds). Lines (or ``marker``s, e.g. a
    ZIP's local headers) are counted on the fly: the client holds no more than a chunk."""
    import httpx

    if marker is None:
        marker = b"<PriceLine>" if fmt == "xml" else b'"LineId":'
    count = size = 0
    tail = b""  # a marker may straddle two chunks
    started = time.perf_counter()
    with httpx.stream("GET", base + path, params={**DATE_RANGE, "format": fmt, **(params or {})},
                      headers={"X-Api-Key": secret}, timeout=3600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
            window = tail + chunk
            count += window.count(marker)
            tail = window[-(len(marker) - 1):]
    return count, size, time.perf_counter() - started


# --- timing -----------------------------------------------------------------------------------


def interleaved_best(subjects: dict[str, Callable[[], Any]], repeats: int
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """Run each subject ``repeats`` times, round-robin (A B C A B C …); each one's best time
    in seconds and the value its last run returned."""
    best = {name: float("inf") for name in subjects}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for name, run in subjects.items():
            started = time.perf_counter()
            last[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, last


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def emit_summary(summary: dict[str, Any]) -> None:
    """The benchmark's result: one JSON object as the last line of stdout."""
    print(json.dumps(summary, separators=(",", ":")), flush=True)


def add_common_arguments(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and fewer repeats (what bench/run.py --quick uses)")
    parser.add_argument("--backend", choices=BACKENDS, action="append",
                        help="database backend (repeatable); default both when PostgreSQL "
                        "answers, else SQLite only")


def chosen_backends(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(backends to run, notes about skipped ones)."""
    wanted = requested or list(BACKENDS)
    notes = []
    if "postgresql" in wanted and not postgres_available():
        wanted = [b for b in wanted if b != "postgresql"]
        notes.append(f"PostgreSQL skipped: no server answers at {POSTGRES_ADMIN_URL.split('@')[-1]}"
                     " (run scripts/install-system-deps)")
    return wanted, notes

"""The cost of `DATABASE_TRANSACTION_POOLER`: no-op jobs/s through one `connectra jobs
first_time` process (`PARALLEL_JOBS=10`), in interleaved rounds of the same run:

- `direct`: PostgreSQL directly, asyncpg's statement cache on (the default);
- `direct_no_cache`: PostgreSQL directly with `DATABASE_TRANSACTION_POOLER=true`, which turns
  the statement cache off (and `DATABASE_DIRECT_URL`, the same server, to keep LISTEN): the
  cost of the setting alone;
- `pgbouncer`: through a PgBouncer in transaction mode (started here, `default_pool_size=20`)
  with the setting, LISTEN on `DATABASE_DIRECT_URL`.

    python bench/bench_pooler.py [--jobs 5000] [--rounds 3]

Prints each round and the medians' ratios to `direct`. Needs /usr/sbin/pgbouncer for the third.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from bench_queue import _reset, runner_env
from common import PYTHON, bench_database, children, free_port, log, start, wait_for, wait_log

PGBOUNCER = Path("/usr/sbin/pgbouncer")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pgbouncer(dsn: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A PgBouncer in transaction mode in front of `dsn`'s server; the DSN through it."""
    parts = urlsplit(dsn)
    port = free_port()
    login = f"host={parts.hostname} port={parts.port or 5432} user={parts.username or 'postgres'}"
    if parts.password:
        login += f" password={parts.password}"
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n* = {login}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\n"
        "default_pool_size = 20\nmax_client_conn = 200\n"
    )
    folder.chmod(0o755)
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [PGBOUNCER, *as_user, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not _accepts(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("PgBouncer did not start")
        time.sleep(0.05)
    netloc = parts.netloc.rpartition("@")[0]
    netloc = f"{netloc}@127.0.0.1:{port}" if netloc else f"127.0.0.1:{port}"
    return proc, urlunsplit(parts._replace(netloc=netloc))


def _pgbouncer_if_installed(dsn: str, folder: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """`_pgbouncer`, or (None, "") without /usr/sbin/pgbouncer (blocking: run in a thread)."""
    return _pgbouncer(dsn, folder) if PGBOUNCER.exists() else (None, "")


async def rate(dsn: str, runner_dsn: str, jobs: int, name: str, **extra: str) -> float:
    """No-op jobs/s of one runner on `runner_dsn` (jobs inserted directly on `dsn`)."""
    await _reset(dsn)
    env = runner_env(runner_dsn, **extra)
    with children() as procs:
        command = [PYTHON, "-m", "connectra", "jobs", "first_time"]
        procs.append(start(f"pooler_{name}", command, env))
        await wait_log(procs[0], "listening for new jobs")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, $1)",
                jobs,
            )
            await conn.execute("NOTIFY connectra_jobs, 'open'")

            async def done() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                return bool(n >= jobs)

            await wait_for(done, limit=600, what=f"{jobs} completed jobs", interval=0.1)
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
            )
        finally:
            await conn.close()
    return jobs / float(span)


async def main(jobs: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="connectra-bench-pgbouncer-") as folder:
        async with bench_database("pooler") as dsn:
            bouncer, through = await asyncio.to_thread(_pgbouncer_if_installed, dsn, Path(folder))
            try:
                contenders = {
                    "direct": (dsn, {}),
                    "direct_no_cache": (
                        dsn,
                        {"DATABASE_TRANSACTION_POOLER": "true", "DATABASE_DIRECT_URL": dsn},
                    ),
                }
                if through:
                    contenders["pgbouncer"] = (
                        through,
                        {"DATABASE_TRANSACTION_POOLER": "true", "DATABASE_DIRECT_URL": dsn},
                    )
                runs: dict[str, list[float]] = {name: [] for name in contenders}
                for round_ in range(rounds):
                    for name, (runner_dsn, extra) in contenders.items():
                        runs[name].append(await rate(dsn, runner_dsn, jobs, name, **extra))
                        log(f"round {round_ + 1} {name}: {runs[name][-1]:,.0f} jobs/s")
            finally:
                if bouncer is not None:
                    bouncer.terminate()
                    bouncer.wait(10)
    base = statistics.median(runs["direct"])
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"{name:16} median {median:8,.0f} jobs/s  ratio to direct {median / base:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))

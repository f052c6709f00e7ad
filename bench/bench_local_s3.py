"""`connectra run` with its local S3: the daemon's peak RSS and the export's speed, the S3
server being a child process (this checkout) or, with `--against`, a thread inside the daemon
(an older checkout, e.g. a worktree of the commit before the change).

    git worktree add --detach /tmp/connectra-s3-before <commit with the in-thread server>
    python bench/bench_local_s3.py [--rows 300000] [--rounds 3] [--against /tmp/connectra-s3-before]
    python bench/bench_local_s3.py --this /tmp/after --against /tmp/before   # two snapshots

A checkout being edited by others is better measured as a copy (`connectra/`, `migrations/`);
for a fair "against", take the same copy with only `local_s3.py` and `run` in `cli.py` as
they were before the change.

Each side: a fresh database, `connectra run` (PYTHONPATH=<checkout>, LOCAL_S3_PORT=0, no AWS
credentials so the local S3 starts), the generated contacts file uploaded through the API's
presigned URL, imported by `insert_csv_file`, then `--rounds` exports of every contact by
`export_csv_file` interleaved with the baseline: `psql \\copy (SELECT ... ORDER BY uuid) TO` a
local file, on the same data in the same run. Export time is the job's `completed_at -
started_at`. The daemon's (and the S3 child's) peak RSS is VmHWM from /proc at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from bench_export import PAGE, psql_export
from bench_import import data_file
from common import (
    PYTHON,
    REPO,
    Child,
    bench_database,
    children,
    cpu_seconds,
    free_port,
    log,
    product_env,
    start,
    status_mb,
    wait_for,
    wait_log,
    write_report,
)
from gen_contacts import COLUMNS

LOCAL_API_KEY = "local-dev-key"
DONE = ("completed", "failed", "failed_final", "aborted")


def local_s3_event(daemon: Child) -> dict[str, Any]:
    """The daemon's `local in-memory S3 ready` line (the child's pid is in it since the change)."""
    for line in daemon.log_text().splitlines():
        if '"action":"local_s3"' in line:
            return dict(json.loads(line))
    raise RuntimeError("no local S3 line in the daemon's log")


def checkout_commit(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


async def run_job(http: aiohttp.ClientSession, dsn: str, job_type: str, data: Any) -> float:
    """Create the job through the API, wait for its end; seconds from started to completed."""
    response = await http.post("/common/jobs/create", json={"job_type": job_type, "job_data": data})
    created = await response.json()
    assert response.status in (200, 201), created
    conn = await asyncpg.connect(dsn)
    try:

        async def ended() -> bool:
            status = await conn.fetchval("SELECT status FROM jobs WHERE uuid = $1", created["uuid"])
            return status in DONE

        await wait_for(ended, 3600, job_type, interval=0.1)
        row = await conn.fetchrow(
            "SELECT status, job_response::text AS response,"
            " extract(epoch FROM completed_at - started_at) AS seconds FROM jobs WHERE uuid = $1",
            created["uuid"],
        )
    finally:
        await conn.close()
    if row["status"] != "completed":
        raise RuntimeError(f"{job_type} ended {row['status']}: {row['response'][:2000]}")
    return float(row["seconds"])


async def upload(http: aiohttp.ClientSession, path: Path) -> tuple[dict[str, Any], float]:
    """The file PUT to the API's presigned URL; the target and the seconds the PUT took."""
    target = await (await http.get("/common/upload-url?filename=contacts.csv")).json()
    body = await asyncio.to_thread(path.read_bytes)
    began = time.perf_counter()
    async with aiohttp.ClientSession() as plain:
        put = await plain.put(target["upload_url"], data=body, headers={"Content-Type": "text/csv"})
        assert put.status == 200, await put.text()
    return target, time.perf_counter() - began


async def stop(daemon: Child, s3_pid: int | None) -> dict[str, Any]:
    """SIGTERM to the daemon alone (not its group, as `children()` would); did the S3 child go?"""
    os.kill(daemon.proc.pid, signal.SIGTERM)
    code = await asyncio.to_thread(daemon.proc.wait, 60)
    left = s3_pid is not None and status_mb(s3_pid, "VmRSS") is not None
    return {"exit_code": code, "s3_child_left_behind": left}


async def side(label: str, checkout: Path, rows: int, rounds: int) -> dict[str, Any]:
    """One checkout's daemon through upload, import and the export rounds."""
    path = data_file(rows)
    cols = list(COLUMNS)
    async with bench_database(f"s3{label}", checkout=checkout) as dsn:
        port = free_port()
        env = product_env(dsn, checkout=checkout, API_PORT=port, LOCAL_S3_PORT=0, API_KEYS="")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            env.pop(name)  # credentials would make `connectra run` skip its local S3
        env |= {"PARALLEL_JOBS": "4", "TICKER_INTERVAL_SECONDS": "1"}
        with children() as procs:
            daemon = start(f"local_s3_{label}", [PYTHON, "-m", "connectra", "run"], env)
            procs.append(daemon)
            await wait_log(daemon, '"api_listen"', 60)
            s3_pid = local_s3_event(daemon).get("pid")
            pid = daemon.proc.pid
            out: dict[str, Any] = {"commit": checkout_commit(checkout), "s3_in_child": bool(s3_pid)}
            out["daemon_idle_rss_mb"] = status_mb(pid, "VmRSS")
            out["s3_child_idle_rss_mb"] = s3_pid and status_mb(s3_pid, "VmRSS")
            headers = {"X-API-Key": LOCAL_API_KEY}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
                log(f"{label}: upload {path.stat().st_size / 1e6:.0f} MB through the upload URL")
                target, out["upload_s"] = await upload(http, path)
                out["daemon_rss_after_upload_mb"] = status_mb(pid, "VmHWM")
                log(f"{label}: import {rows} rows")
                data = {"s3_key": target["s3_key"], "s3_bucket": target["s3_bucket"]}
                seconds = await run_job(http, dsn, "insert_csv_file", data | {"service": "contact"})
                out["import_rows_per_s"] = rows / seconds
                conn = await asyncpg.connect(dsn)
                await conn.execute("VACUUM ANALYZE contacts")
                await conn.close()
                export = {"service": "contact", "vql": {"select_columns": cols, "limit": PAGE}}
                psql_s, export_s = [], []
                cpu_before = cpu_seconds(pid), s3_pid and cpu_seconds(s3_pid)
                for number in range(rounds):
                    log(f"{label}: export round {number + 1}: psql, then export_csv_file")
                    psql_s.append(await asyncio.to_thread(psql_export, dsn))
                    export_s.append(await run_job(http, dsn, "export_csv_file", export))
                cpu_after = cpu_seconds(pid), s3_pid and cpu_seconds(s3_pid)
            out["daemon_peak_rss_mb"] = status_mb(pid, "VmHWM")
            out["s3_child_peak_rss_mb"] = s3_pid and status_mb(s3_pid, "VmHWM")
            out["export_cpu_s"] = {
                "daemon": (cpu_after[0] or 0) - (cpu_before[0] or 0),
                "s3_child": s3_pid and (cpu_after[1] or 0) - (cpu_before[1] or 0),
            }
            out |= {"psql_export_s": psql_s, "export_s": export_s}
            out["export_ratios"] = [p / e for p, e in zip(psql_s, export_s, strict=True)]
            out["export_ratio_median"] = statistics.median(out["export_ratios"])
            out["stop"] = await stop(daemon, s3_pid)
    return out


def _seconds(values: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


ROWS: list[tuple[str, Any]] = [
    ("S3 server", lambda s: "child process" if s["s3_in_child"] else "thread in the daemon"),
    ("daemon idle RSS MB", lambda s: f"{s['daemon_idle_rss_mb']:.0f}"),
    ("daemon peak RSS MB (VmHWM)", lambda s: f"{s['daemon_peak_rss_mb']:.0f}"),
    ("S3 child peak RSS MB", lambda s: f"{s['s3_child_peak_rss_mb'] or 0:.0f}"),
    ("upload s", lambda s: f"{s['upload_s']:.2f}"),
    ("import rows/s", lambda s: f"{s['import_rows_per_s']:,.0f}"),
    ("export s (each round)", lambda s: _seconds(s["export_s"])),
    ("psql copy-out s (each round)", lambda s: _seconds(s["psql_export_s"])),
    ("export / psql rows/s, median", lambda s: f"{s['export_ratio_median']:.2f}x"),
    ("daemon CPU s in the exports", lambda s: f"{s['export_cpu_s']['daemon']:.1f}"),
    ("S3 child CPU s in the exports", lambda s: f"{s['export_cpu_s']['s3_child'] or 0:.1f}"),
    ("stopped: exit code", lambda s: str(s["stop"]["exit_code"])),
    ("S3 child left behind", lambda s: str(s["stop"]["s3_child_left_behind"])),
]


def table(sides: dict[str, dict[str, Any]]) -> str:
    """The figures side by side."""
    lines = [f"{'':32}" + "".join(f"{name:>24}" for name in sides)]
    for title, cell in ROWS:
        lines.append(f"{title:32}" + "".join(f"{cell(s):>24}" for s in sides.values()))
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--this", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--against", type=Path, help="a checkout with the in-thread S3 server")
    args = parser.parse_args()
    began = time.time()
    sides = {"this": await side("this", args.this, args.rows, args.rounds)}
    if args.against:
        sides["against"] = await side("against", args.against, args.rows, args.rounds)
    print(table(sides))
    report = {"rows": args.rows, "rounds": args.rounds, "sides": sides}
    log(f"wrote {write_report('local_s3', report, began)}")


if __name__ == "__main__":
    asyncio.run(main())

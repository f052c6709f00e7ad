"""Peer job queues driven the same way as the product: a no-op handler, N jobs, one process.

    python bench/peer_workers.py pgqueuer-setup DSN
    python bench/peer_workers.py pgqueuer-enqueue DSN N
    python bench/peer_workers.py pgqueuer-drain DSN BATCH
    python bench/peer_workers.py pgqueuer-listen DSN          (prints "<job id> <time>" per job)
    python bench/peer_workers.py procrastinate-setup DSN
    python bench/peer_workers.py procrastinate-enqueue DSN N
    python bench/peer_workers.py procrastinate-drain DSN CONCURRENCY

Drain modes print one JSON line: {"jobs": n, "first": t0, "last": t1, "cpu_s": c} (time.time()
of the first handler start and of the last handler end, and the process's CPU between them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg


class Span:
    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0

    def begin(self) -> None:
        if not self.count:
            self.first = time.time()
            self.cpu_first = time.process_time()

    def end(self) -> None:
        self.count += 1
        self.last = time.time()
        self.cpu_last = time.process_time()

    def report(self) -> None:
        report = {
            "jobs": self.count,
            "first": self.first,
            "last": self.last,
            "cpu_s": self.cpu_last - self.cpu_first,  # the worker's CPU from first to last job
        }
        print(json.dumps(report), flush=True)


async def pgqueuer_main(mode: str, dsn: str, arg: str | None) -> None:
    from pgqueuer import AsyncpgDriver, PgQueuer, Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(dsn)
    driver = AsyncpgDriver(conn)
    if mode == "setup":
        await Queries(driver).install()
        return
    if mode == "enqueue":
        n = int(arg or 0)
        queries = Queries(driver)
        for start in range(0, n, 5000):
            k = min(5000, n - start)
            await queries.enqueue(["noop"] * k, [None] * k, [0] * k)
        return
    pgq = PgQueuer(driver)
    span = Span()
    if mode == "drain":

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            span.begin()
            span.end()

        await pgq.run(
            dequeue_timeout=timedelta(seconds=1),
            batch_size=int(arg or 10),
            mode=QueueExecutionMode.drain,
        )
        span.report()
        return

    @pgq.entrypoint("noop")
    async def stamp(job: Any) -> None:
        print(f"{job.id} {time.time():.6f}", flush=True)

    print("ready", flush=True)
    await pgq.run(dequeue_timeout=timedelta(seconds=60), batch_size=10)


async def procrastinate_main(mode: str, dsn: str, arg: str | None) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    span = Span()

    @app.task(name="noop")
    async def noop() -> None:
        span.begin()
        span.end()

    async with app.open_async():
        if mode == "setup":
            await app.schema_manager.apply_schema_async()
        elif mode == "enqueue":
            n = int(arg or 0)
            for start in range(0, n, 5000):
                await noop.batch_defer_async(*({} for _ in range(min(5000, n - start))))
        else:
            await app.run_worker_async(
                concurrency=int(arg or 10), wait=False, install_signal_handlers=False
            )
            span.report()


def main() -> None:
    peer, _, mode = sys.argv[1].partition("-")
    dsn, arg = sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
    target = pgqueuer_main if peer == "pgqueuer" else procrastinate_main
    asyncio.run(target(mode, dsn, arg))


if __name__ == "__main__":
    main()

"""Where does a product process spend its time? py-spy on a runner during one benchmark.

    python bench/profile.py queue [JOBS]      # one runner draining JOBS no-op jobs
    python bench/profile.py import [ROWS]     # one runner importing the generated file
    python bench/profile.py export [ROWS]
    python bench/profile.py api               # `connectra api` under wrk, 200 connections

Writes collapsed stacks to /tmp/connectra-bench/profile-<name>.txt and prints the functions
with the most samples (inclusive and own), plus transactions per job for `queue`.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import bench_api
import bench_export
import bench_import
import bench_queue
import common

PYSPY = str(Path(sys.executable).with_name("py-spy"))


def summarize(path: Path, top: int = 25) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    print("-- inclusive --")
    for frame, n in inclusive.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame[:140]}")
    print("-- own --")
    for frame, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame[:140]}")


class Spy:
    """Attach py-spy to every product child started while active."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.out = common.WORK / f"profile-{name}.txt"
        self.spies: list[subprocess.Popen[bytes]] = []
        self._start = common.start

    def __enter__(self) -> Spy:
        def start(name: str, args: list[str], env: dict[str, str] | None = None) -> common.Child:
            child = self._start(name, args, env)
            if "connectra" in args:
                self.spies.append(
                    subprocess.Popen(
                        [
                            PYSPY,
                            "record",
                            "-p",
                            str(child.proc.pid),
                            "-f",
                            "raw",
                            "-r",
                            "200",
                            "-o",
                            str(self.out),
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            return child

        for module in (common, bench_queue, bench_import, bench_export, bench_api):
            module.start = start  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        for spy in self.spies:
            spy.wait(30)
        summarize(self.out)


async def queue(jobs: int) -> None:
    async with common.bench_database("profile") as dsn:
        conn = await asyncpg.connect(dsn)
        before = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        rate = await bench_queue.connectra_rate(dsn, jobs, 1)
        after = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        await conn.close()
    print(rate, f"commits per job: {(after - before) / jobs:.2f}")


async def main() -> None:
    name = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else None
    with Spy(name):
        if name == "queue":
            await queue(size or 20_000)
        elif name == "import":
            print((await bench_import.run(False, size or 1_000_000)).details)
        elif name == "export":
            print((await bench_export.run(False, size or 1_000_000)).details)
        else:
            print((await bench_api.run(True)).details)


if __name__ == "__main__":
    asyncio.run(main())

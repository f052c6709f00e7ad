"""Elasticsearch for the benchmarks: `BENCH_ELASTICSEARCH_URL` (a real cluster) if set, else a
private osmem-server process (an in-memory engine speaking the OpenSearch API, the test
suite's stand-in). Its speed is osmem's, not Elasticsearch's: figures against it say what the
product costs around the engine, not what a cluster would sustain."""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from common import cpu_seconds

from connectra.catalog import SERVICES
from connectra.processors.search_index import index_name


@dataclass(frozen=True)
class Search:
    url: str
    engine: str  # "elasticsearch (BENCH_ELASTICSEARCH_URL)" or "osmem-server x.y"
    prefix: str  # ELASTICSEARCH_INDEX_PREFIX of this run, so a shared cluster is not disturbed
    pid: int | None = None  # the local engine's process

    def cpu_seconds(self) -> float:
        """CPU the local engine has used so far (0 for a remote cluster)."""
        return (cpu_seconds(self.pid) or 0.0) if self.pid is not None else 0.0

    def env(self) -> dict[str, str]:
        """The product's settings for this engine."""
        plain = "false" if self.engine.startswith("elasticsearch") else "true"
        return {
            "ELASTICSEARCH_URL": self.url,
            "ELASTICSEARCH_PLAIN_MEDIA_TYPES": plain,
            "ELASTICSEARCH_INDEX_PREFIX": self.prefix,
        }

    def drop_indices(self) -> None:
        """Delete this run's indices (a real cluster outlives the benchmark)."""
        for service in SERVICES.values():
            name = index_name(self.prefix, service)
            request = urllib.request.Request(f"{self.url}/{name}", method="DELETE")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(request, timeout=30).close()


@contextlib.contextmanager
def search_engine() -> Iterator[Search]:
    prefix = f"bench_{secrets.token_hex(4)}_"
    explicit = os.environ.get("BENCH_ELASTICSEARCH_URL")
    if explicit:
        search = Search(explicit.rstrip("/"), "elasticsearch (BENCH_ELASTICSEARCH_URL)", prefix)
        try:
            yield search
        finally:
            search.drop_indices()
        return
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    try:
        yield Search(server.url, f"osmem-server {server.version}", prefix, server.pid)
    finally:
        server.close()
        if server.process.stdout is not None:
            server.process.stdout.close()

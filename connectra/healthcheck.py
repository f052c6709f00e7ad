"""`connectra healthcheck`: ask a process's `/readyz`, for container HEALTHCHECKs.

With no URL it asks the API's address, then a runner process's metrics listener.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `--url` needs no settings, so no pydantic either
    from connectra.settings import Settings

DEFAULT_TIMEOUT = 5.0
# A listener bound to every address is reached on loopback.
ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one probe found: ready or not, one line saying why, and whether nothing listened."""

    ready: bool
    reason: str
    refused: bool = False


def default_urls(settings: Settings) -> list[str]:
    """The API's `/readyz`, then the runner listener's (unless METRICS_PORT is 0)."""
    urls = [_readyz(settings.api_host, settings.api_port)]
    if settings.metrics_port:
        urls.append(_readyz(settings.metrics_host, settings.metrics_port))
    return urls


def _readyz(host: str, port: int) -> str:
    """The `/readyz` URL of a listener."""
    host = ANY_ADDRESS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/readyz"


def check(urls: list[str], timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Probe the URLs in turn until one answers (or none is left)."""
    verdict = Verdict(False, "no URL to check")
    for url in urls:
        verdict = probe(url, timeout)
        if not verdict.refused:
            return verdict
    return verdict


def probe(url: str, timeout: float) -> Verdict:
    """GET `url`: ready on 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return Verdict(True, f"{url}: {answer.status} ready")
    except urllib.error.HTTPError as exc:
        return Verdict(False, f"{url}: {exc.code} {_problems(exc.read())}")
    except urllib.error.URLError as exc:
        refused = isinstance(exc.reason, ConnectionRefusedError)
        return Verdict(False, f"{url}: {exc.reason}", refused)
    except (TimeoutError, OSError) as exc:
        return Verdict(False, f"{url}: {exc or type(exc).__name__}")


def _problems(body: bytes) -> str:
    """What a 503 of `/readyz` says is wrong (its `problems`), or the start of the body."""
    try:
        problems = json.loads(body).get("problems")
    except (ValueError, AttributeError):
        problems = None
    if isinstance(problems, list) and problems:
        return "; ".join(str(problem) for problem in problems)
    return body[:200].decode(errors="replace").strip() or "no body"

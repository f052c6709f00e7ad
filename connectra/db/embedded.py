"""The local default: an embedded PostgreSQL in a data folder of its own (pgserver)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from connectra.errors import EmbeddedDatabaseError

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server for this folder and return its URL.

    Blocking: call it before the event loop starts. Several processes may share one folder;
    the server stops when the last of them exits.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver copes without it.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        raise EmbeddedDatabaseError(
            "no DATABASE_URL is set and the embedded PostgreSQL is not installed; "
            "install 'connectra-jobs[embedded]' or set DATABASE_URL"
        ) from exc
    folder = data_dir.expanduser().resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(folder, cleanup_mode="stop")
    url: str = server.get_uri()
    log.info("embedded PostgreSQL ready", extra={"action": "embedded_db", "url": url})
    return url

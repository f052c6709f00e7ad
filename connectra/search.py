"""The Elasticsearch client, optionally speaking plain JSON media types (for
OpenSearch-compatible servers), and what its exceptions count as.
"""

from __future__ import annotations

import re

from elastic_transport import AiohttpHttpNode, BaseNode, HttpHeaders
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch import ConnectionError as EsConnectionError

from connectra.errors import SearchError

_COMPATIBLE_MEDIA_TYPE = re.compile(
    r"application/vnd\.elasticsearch\+(json|x-ndjson)\s*;\s*compatible-with=\d+"
)
_MEDIA_TYPE_HEADERS = ("accept", "content-type")


def plain_media_type(value: str) -> str:
    """The header value with Elasticsearch's versioned media types made plain."""
    return _COMPATIBLE_MEDIA_TYPE.sub(r"application/\1", value)


def _plain_headers(headers: HttpHeaders | None) -> HttpHeaders | None:
    """A copy of the request headers with plain media types."""
    if headers is None:
        return None
    plain = HttpHeaders(headers)
    for name in _MEDIA_TYPE_HEADERS:
        if name in plain:
            plain[name] = plain_media_type(plain[name])
    return plain


class PlainMediaTypeNode(AiohttpHttpNode):
    """An aiohttp node that sends plain JSON media types, for OpenSearch-compatible servers."""

    async def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        """Send the request with its Accept and Content-Type rewritten."""
        return await super().perform_request(
            method,
            target,
            body=body,
            headers=_plain_headers(headers),
            request_timeout=request_timeout,
        )


def make_es_client(
    url: str,
    plain_media_types: bool,
    *,
    request_timeout: float = 30.0,
    max_retries: int = 3,
) -> AsyncElasticsearch:
    """An async Elasticsearch client for `url`; close it with `await client.close()`."""
    node_class: type[BaseNode] | DefaultType = PlainMediaTypeNode if plain_media_types else DEFAULT
    return AsyncElasticsearch(
        url,
        node_class=node_class,
        request_timeout=request_timeout,
        max_retries=max_retries,
        retry_on_timeout=True,
    )


def search_error(exc: BaseException) -> SearchError | None:
    """The `ERR_ELASTICSEARCH` error a client exception counts as (None for any other exception):
    transient when the cluster was unreachable, overloaded (429) or failing (5xx)."""
    if isinstance(exc, EsConnectionError):
        transient = True
    elif isinstance(exc, ApiError):
        status = int(exc.status_code)
        transient = status == 429 or status >= 500
    else:
        return None
    error = SearchError(str(exc) or type(exc).__name__, transient=transient)
    error.__cause__ = exc
    return error

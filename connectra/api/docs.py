"""The API's documentation: the OpenAPI document at /openapi.json and Swagger UI at /docs.

Swagger UI's files come from the `openapi-ui-bundles` package and are served from here, so
the page works with no network (no CDN). Only the files the page uses are served.
"""

from __future__ import annotations

import json

from aiohttp import web
from openapi_ui_bundles import swagger_ui

from connectra.api.openapi import build_document
from connectra.api.state import REGISTRY, SETTINGS

OPENAPI_PATH = "/openapi.json"
DOCS = "/docs"
DOCS_STATIC = f"{DOCS}/static"
INITIALIZER = "connectra-docs.js"
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)
OPENAPI_BODY = web.AppKey("openapi_body", bytes)

# No inline script or style of ours, so the page keeps a strict policy; Swagger UI sets
# inline styles on its own elements and shows images from data: URLs.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Connectra Jobs API</title>
  <link rel="stylesheet" href="{DOCS_STATIC}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{DOCS_STATIC}/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{DOCS_STATIC}/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_STATIC}/swagger-ui-bundle.js"></script>
  <script src="{DOCS_STATIC}/{INITIALIZER}"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
INITIALIZER_JS = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}});
"""


def add_api_docs(app: web.Application) -> None:
    """Serve the document of this app's API (its job types and settings) and the page."""
    document = build_document(app[REGISTRY], app[SETTINGS])
    app[OPENAPI_BODY] = json.dumps(document, ensure_ascii=False).encode()
    app.add_routes(
        [
            web.get(OPENAPI_PATH, openapi_json),
            web.get(DOCS, docs_page),
            web.get(f"{DOCS_STATIC}/{{file}}", docs_file),
        ]
    )


async def openapi_json(request: web.Request) -> web.Response:
    """`GET /openapi.json`: the OpenAPI 3.1 document."""
    return web.Response(body=request.app[OPENAPI_BODY], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    """`GET /docs`: Swagger UI on the document."""
    response = web.Response(text=PAGE, content_type="text/html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


async def docs_file(request: web.Request) -> web.StreamResponse:
    """`GET /docs/static/{file}`: one of Swagger UI's files, or the page's initializer."""
    name = request.match_info["file"]
    if name == INITIALIZER:
        return web.Response(text=INITIALIZER_JS, content_type="text/javascript")
    if name not in SWAGGER_UI_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(swagger_ui.static_path / name)

"""The baseline HTTP server: a bare aiohttp handler that parses the JSON body and answers JSON.

python bench/bare_api.py PORT
"""

from __future__ import annotations

import sys
import uuid

from aiohttp import web


async def create(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"uuid": str(uuid.uuid4()), "job_type": body.get("job_type")}, status=201
    )


def main() -> None:
    app = web.Application()
    app.add_routes([web.post("/common/jobs/create", create)])
    print("bare api listening", flush=True)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

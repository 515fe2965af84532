"""The block explorer: a static one-page app served by the node's RPC server.

The page talks only to the public JSON-RPC on the same origin (and the WebSocket when the
node has one), so it needs no build step and fetches nothing from the internet. Files are
served from a fixed allowlist built at import time: a request names a file, never a path,
so nothing outside `static/` can be reached (no traversal, no symlinks followed at request
time).
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.[a-z]+$")

# Scripts and styles only from this origin; connections (fetch, WebSocket) only back to it.
# No inline script may run, so even a rendering bug cannot execute attacker text.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def load_static_files(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type) for every servable file in `directory`."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(entry.suffix)
        if entry.is_file() and not entry.is_symlink() and content_type and \
                _SAFE_NAME.match(entry.name):
            files[entry.name] = (entry.read_bytes(), content_type)
    return files


def add_explorer_routes(app: web.Application, files: dict[str, tuple[bytes, str]] | None = None,
                        ) -> None:
    """GET /explorer (the page) and /explorer/{name} (its files)."""
    served = load_static_files() if files is None else files

    def respond(name: str) -> web.Response:
        found = served.get(name)
        if found is None:
            raise web.HTTPNotFound(text="not found", headers=SECURITY_HEADERS)
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=SECURITY_HEADERS)

    async def index(_request: web.Request) -> web.Response:
        return respond("index.html")

    async def static_file(request: web.Request) -> web.Response:
        return respond(request.match_info["name"])

    app.router.add_get("/explorer", index)
    app.router.add_get("/explorer/", index)
    app.router.add_get("/explorer/{name}", static_file)

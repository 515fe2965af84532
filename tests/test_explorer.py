"""The explorer's routes and files, without a browser: what is served, with which content
type and headers, that nothing outside its directory can be reached, and that its scripts
never turn chain data into HTML (titles, notes and reviews are attacker-controlled)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.explorer import STATIC_DIR, add_explorer_routes, load_static_files
from node.rpc.dispatcher import Dispatcher
from node.rpc.server import make_app

SCRIPTS = sorted(STATIC_DIR.glob("*.js"))


@pytest.fixture
async def client():
    app = make_app(Dispatcher(), 1 << 20)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/explorer", "/explorer/"])
async def test_page_is_served_at_explorer(client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.charset == "utf-8"
    body = await response.text()
    assert '<script type="module" src="/explorer/app.js">' in body
    assert '<main id="main">' in body


@pytest.mark.parametrize(("name", "content_type"), [
    ("app.js", "text/javascript"), ("dom.js", "text/javascript"), ("rpc.js", "text/javascript"),
    ("live.js", "text/javascript"), ("format.js", "text/javascript"), ("style.css", "text/css"),
    ("index.html", "text/html"),
])
async def test_files_have_their_content_type(client, name: str, content_type: str) -> None:
    response = await client.get(f"/explorer/{name}")
    assert response.status == 200
    assert response.content_type == content_type
    assert await response.read() == (STATIC_DIR / name).read_bytes()


async def test_security_headers(client) -> None:
    response = await client.get("/explorer/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", [
    "/explorer/../node.py", "/explorer/..%2f__init__.py", "/explorer/%2e%2e/__init__.py",
    "/explorer/..%2F..%2Fpyproject.toml", "/explorer/__init__.py", "/explorer/static",
    "/explorer/static/app.js", "/explorer/.hidden.js", "/explorer/app.js%00.css",
    "/explorer/APP.JS", "/explorer/missing.js", "/explorer/%2fetc%2fpasswd",
])
async def test_no_traversal_and_nothing_outside_the_allowlist(client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404, path
    body = await response.read()
    assert b"import" not in body and b"root:" not in body


async def test_rpc_still_answers_beside_the_explorer(client) -> None:
    response = await client.post("/", data=b'{"jsonrpc":"2.0","id":1,"method":"nope"}')
    assert response.status == 200
    assert (await response.json())["error"]["code"] == -32601


def test_allowlist_skips_symlinks_and_odd_names(tmp_path: Path) -> None:
    (tmp_path / "ok.js").write_text("export {};")
    (tmp_path / "secret.py").write_text("x = 1")
    (tmp_path / "Upper.js").write_text("x")
    (tmp_path / "link.js").symlink_to(tmp_path / "secret.py")
    (tmp_path / "sub.css").mkdir()
    assert sorted(load_static_files(tmp_path)) == ["ok.js"]


async def test_served_set_is_the_allowlist(tmp_path: Path) -> None:
    from aiohttp import web

    app = web.Application()
    add_explorer_routes(app, {"index.html": (b"<p>hi</p>", "text/html")})
    async with TestClient(TestServer(app)) as test_client:
        assert (await test_client.get("/explorer")).status == 200
        assert (await test_client.get("/explorer/app.js")).status == 404


# --- the scripts never parse chain data as HTML ----------------------------------------------

HTML_SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|"
                        r"\beval\s*\(|new Function|setAttribute\(\s*['\"]on|srcdoc|"
                        r"createContextualFragment|DOMParser")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_no_html_sinks(script: Path) -> None:
    source = script.read_text()
    found = HTML_SINKS.findall(source)
    assert not found, f"{script.name} uses {found}: chain text must only become text nodes"


def test_the_sink_check_would_catch_one() -> None:
    assert HTML_SINKS.search("el.innerHTML = listing.title")
    assert HTML_SINKS.search("x.insertAdjacentHTML('beforeend', s)")


def test_scripts_fetch_nothing_from_the_internet() -> None:
    for path in [*SCRIPTS, STATIC_DIR / "index.html", STATIC_DIR / "style.css"]:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names an external URL"
        assert "@import" not in text


def test_links_are_confined_to_the_app() -> None:
    # dom.js refuses any href that is not an app route, so a crafted value cannot become
    # a javascript: or external link.
    source = (STATIC_DIR / "dom.js").read_text()
    assert "if (!href.startsWith('#/')) throw" in source
    assert "encodeURIComponent" in source

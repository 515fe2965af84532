"""The explorer in a real headless Chromium against a real devnet node process.

A node is started as a subprocess, a small commerce story is committed with signed txs
(list, buy, ship, track, confirm, review; the listing title and the review carry HTML that
must be shown as text), then Playwright drives Debian's /usr/bin/chromium: latest blocks,
a new block appearing live, search to the block of the purchase, its tx, the order (status
timeline and provenance trail), the listing (review and average rating), the merchant's
account and the validators. Screenshots go to test-artifacts/explorer-*.png.

`make test` installs chromium (as root) and the `playwright` package (dev extras); the
browser is never downloaded by Playwright. Without them the test skips and says why.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import commerce_vm as vm
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.keys import PrivateKey
from node.client import Client
from tests.e2e_helpers import REPO, NodeHome, init_home, node_homes_fixture  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000

TITLE = 'Alpaca scarf <img src=x onerror="window.pwned=1">'
ORIGIN = "Cusco, Peru: Q'ero weavers cooperative"
REVIEW = "Warm and soft. <script>window.pwned=2</script>"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=(
        "/usr/bin/chromium is missing: run `make test` as root (it installs Debian's "
        "chromium) or `sudo apt-get install chromium`")),
    pytest.mark.skipif(sync_playwright is None, reason=(
        "the playwright package is missing: `pip install -e '.[dev]'`")),
]


class Story:
    """Signs and commits txs for the dev accounts of a node home."""

    def __init__(self, home: NodeHome):
        self.client: Client = home.client()
        self.chain_id = home.chain_id
        self.keys = {name: PrivateKey(home.seed(name)) for name in ("merchant", "buyer")}
        self.fees = self.client.call("params")["min_fees"]
        self.accounts = home.accounts

    def send(self, signer: str, tx_type: int, body: list[Any]) -> dict[str, Any]:
        nonce = self.client.call("account", address=self.accounts[signer])["next_nonce"]
        name = T.TYPE_NAMES[tx_type]
        raw = vm.sign_tx(self.keys[signer], self.chain_id, tx_type, nonce, self.fees[name], body)
        answer = self.client.call("broadcast_tx_commit", tx=raw.hex())
        assert answer["code"] == 0, answer
        return answer


def _event(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e["attributes"] for e in answer["events"] if e["kind"] == kind)


def _has_websocket(home: NodeHome) -> bool:
    try:
        with urllib.request.urlopen(f"{home.url}/websocket", timeout=5):
            return True
    except urllib.error.HTTPError as exc:  # a plain GET to a WebSocket route is a 4xx too
        return exc.code != 404


def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"explorer-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 20_000, f"{path} is only {len(data)} bytes: a blank page?"
    return path


def test_explorer_in_headless_chromium(tmp_path: Path, node_homes: list[NodeHome]) -> None:
    home = init_home(tmp_path / "home", chain_id="chainmerce-explorer")
    node_homes.append(home)
    home.start()

    story = Story(home)
    merchant = story.accounts["merchant"]
    listed = story.send("merchant", T.LIST, [0, TITLE, 2500, 5, 0, 0, ORIGIN, b""])
    listing_id = _event(listed, "listing_created")["listing_id"]
    bought = story.send("buyer", T.BUY, [listing_id, 2, 2500, None])
    order_id = _event(bought, "order_created")["order_id"]
    story.send("merchant", T.SHIP, [order_id, "DHL", "JD014600001234",
                                    address_from_text(merchant), "Lima", "handed to DHL"])
    story.send("merchant", T.TRACK, [order_id, "Miami hub", "customs cleared"])
    story.send("buyer", T.CONFIRM, [order_id])
    story.send("buyer", T.REVIEW, [order_id, 5, REVIEW])

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             env={**os.environ, "HOME": str(tmp_path)})
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 820})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
            page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}")
                    if r.status >= 400 else None)
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            _drive(page, home, listing_id, order_id, bought, merchant)
        finally:
            browser.close()
    assert not errors, errors


def _drive(page: Page, home: NodeHome, listing_id: int, order_id: int,
           bought: dict[str, Any], merchant: str) -> None:
    main = page.locator("main")

    # --- latest blocks, and a new one arriving without a reload -----------------------------
    page.goto(f"{home.url}/explorer")
    first_row = page.locator("#blocks tr").first
    expect(first_row).to_be_visible()
    # Live updates come over the WebSocket when the node serves one, else by polling.
    mode = "websocket" if _has_websocket(home) else "polling"
    expect(page.locator("#live")).to_have_attribute("data-mode", mode)
    seen = int(first_row.get_attribute("data-height"))
    page.wait_for_function(
        "h => Number(document.querySelector('#blocks tr').dataset.height) > h", arg=seen)
    assert int(page.locator("#blocks tr").first.get_attribute("data-height")) > seen
    assert page.locator("#blocks tr").count() >= 2
    _shot(page, "home")

    # --- search -> block of the purchase -> its tx -> the order ------------------------------
    page.fill("#q", str(bought["height"]))
    page.press("#q", "Enter")
    expect(page.locator("h1")).to_have_text(f"Block #{bought['height']}")
    tx_link = main.locator(f"a[href='#/tx/{bought['hash']}']")
    expect(tx_link).to_be_visible()
    _shot(page, "block")
    tx_link.click()
    expect(page.locator("h1")).to_contain_text("Transaction")
    expect(main).to_contain_text(bought["hash"])
    expect(main).to_contain_text("order_created")
    _shot(page, "tx")
    main.locator(f"a[href='#/order/{order_id}']").first.click()

    expect(page.locator("h1")).to_have_text(f"Order #{order_id}")
    timeline = page.locator("#timeline")
    for status in ("PAID", "SHIPPED", "COMPLETED", "REVIEWED"):
        expect(timeline).to_contain_text(status)
    trail = page.locator("#trail")
    for text in (ORIGIN, "shipped", "Lima", "handed to DHL", "Miami hub", "customs cleared",
                 "delivered"):
        expect(trail).to_contain_text(text)
    _shot(page, "order")

    # --- the listing: attacker HTML shown as text, the review and its average ----------------
    main.locator(f"a[href='#/listing/{listing_id}']").first.click()
    expect(page.locator("h1")).to_contain_text(TITLE)
    expect(main).to_contain_text(REVIEW)
    expect(page.locator("#average-rating")).to_contain_text("5.0 from 1 review")
    assert main.locator("img, script").count() == 0, "chain text was parsed as HTML"
    assert page.evaluate("window.pwned") is None
    _shot(page, "listing")

    # --- the merchant's account ----------------------------------------------------------------
    main.locator(f"a[href='#/account/{merchant}']").first.click()
    expect(page.locator("h1")).to_have_text("Account")
    expect(main).to_contain_text(merchant)
    expect(main.locator(f"a[href='#/listing/{listing_id}']").first).to_be_visible()
    expect(main).to_contain_text("5.00 · 1 review")
    _shot(page, "account")

    # --- validators: the devnet's one validator, signing ---------------------------------------
    page.click("header nav a[href='#/validators']")
    expect(page.locator("h1")).to_have_text("Validators")
    rows = main.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("signing")
    expect(rows.first.locator("a[href^='#/block/']")).to_be_visible()
    _shot(page, "validators")

    # A route that does not exist and a missing order are pages, not crashes.
    page.goto(f"{home.url}/explorer/#/order/999999")
    expect(page.locator("h1")).to_have_text("Not found")

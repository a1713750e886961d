"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium.

After the public corpus is delivered to a real gunicorn, the test logs in, opens every page,
reads the figures shown, checks that every chart drew something, that the console holds no
error, that a delivery sent while the events page is open appears there, that a month
issued from the Billing page's form is listed with a PDF that downloads, and saves
screenshots (``KEEP_SCREENSHOTS`` names a folder to keep them in: the README's come from
there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from plugnmeet_webhooks.billing.store import invoices
from plugnmeet_webhooks.cli.deliveries import post
from plugnmeet_webhooks.storage import passes
from plugnmeet_webhooks.storage.engine import make_engine, write_transaction
from tests.support.billing import CORPUS_MONTH, CORPUS_TOTAL, billing_file
from tests.support.gunicorn_server import Server, gunicorn
from tests.support.helpers import CORPUS, KEY, SECRET, corpus_json
from validation import sign

pytestmark = pytest.mark.slow

ADMIN = "b" * 20 + "-browser-admin-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CORPUS_PERIOD = "since=2025-11-26&until=2025-11-26"
PLUGNMEET_URL = "https://meet.plugnmeet.invalid"  # never asked: no background pass
LAST_PASS = 1_764_180_000.0  # 2025-11-26 18:00:00 UTC

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "Chromium or chromedriver is not installed (apt-get install chromium chromium-driver); "
        ".ci/run installs them",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only once Chromium is known to be there
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with gunicorn(
        tmp_path_factory.mktemp("browser"),
        workers=1,
        PNM_ADMIN_TOKEN=ADMIN,
        PNM_PLUGNMEET_URL=PLUGNMEET_URL,
        PNM_RECONCILE_INTERVAL="off",
        PNM_BILLING_FILE=str(billing_file(tmp_path_factory.mktemp("billing"))),
    ) as running:
        for path in CORPUS:
            body = path.read_bytes()
            assert post(running.url, body, sign(body, KEY, SECRET))[0] == 200
        engine = make_engine(running.database_url)  # a pass kept, as reconciliation keeps one
        try:
            with write_transaction(engine) as conn:
                done = passes.PassRecord(
                    KEY, LAST_PASS - 3, LAST_PASS, LAST_PASS - 86400, "completed"
                )
                passes.record(conn, done)
        finally:
            engine.dispose()
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1280,800",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _base(server: Server) -> str:
    return server.url.rsplit("/", 1)[0]


def _save(browser: webdriver.Chrome, shots: Path, name: str) -> None:
    browser.save_screenshot(str(shots / name))
    keep = os.environ.get("KEEP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shots / name, Path(keep) / name)


def _wait_for(browser: webdriver.Chrome, element_id: str) -> None:
    WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def _console_errors(browser: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _charts_drawn(browser: webdriver.Chrome) -> list[dict]:
    """For each chart canvas: whether Chart.js made a chart, and how many pixels it painted."""
    return browser.execute_script(
        """
        return [...document.querySelectorAll('canvas[data-chart]')].map((c) => {
          const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let painted = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
          return {id: c.id, chart: !!Chart.getChart(c), painted: painted};
        });
        """
    )


def _text(browser: webdriver.Chrome, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _log_in(browser: webdriver.Chrome, server: Server) -> None:
    browser.get(f"{_base(server)}/dashboard")
    assert "/dashboard/login" in browser.current_url
    field = browser.find_element(By.ID, "token")
    field.send_keys(ADMIN)
    field.submit()
    _wait_for(browser, "total-minutes")
    assert ADMIN not in browser.current_url


def test_every_page_in_a_real_browser(server, browser, shots):
    _log_in(browser, server)
    base = _base(server)

    # The last 30 days, where a login lands, are long after the corpus: the page says so and
    # offers the 30 days up to the corpus.
    assert "No sessions or AI usage in this period." in _text(browser, "empty-period")
    browser.find_element(By.ID, "newest-period").click()
    WebDriverWait(browser, 10).until(lambda driver: "until=2025-11-26" in driver.current_url)
    assert _text(browser, "total-minutes") == "43"

    browser.get(f"{base}/dashboard?{CORPUS_PERIOD}")
    assert _text(browser, "total-minutes") == "43"
    assert _text(browser, "total-cost") == "0.459858"
    assert _text(browser, "total-attendee-minutes") == "124"
    charts = _charts_drawn(browser)
    assert [c["id"] for c in charts] == ["minutes-chart", "cost-chart"]
    assert all(c["chart"] and c["painted"] > 500 for c in charts), charts
    reconciliation = browser.find_element(By.CSS_SELECTOR, "section.reconcile")
    assert "Last completed pass (UTC)\n2025-11-26 18:00:00" in reconciliation.text
    assert reconciliation.is_displayed() and _text(browser, "api-sessions") == "0"
    assert PLUGNMEET_URL not in browser.page_source
    _save(browser, shots, "overview.png")

    browser.find_element(By.LINK_TEXT, "weekly-standup").click()
    _wait_for(browser, "room-minutes")
    assert _text(browser, "room-minutes") == "43"
    assert _text(browser, "room-cost") == "0.459858"
    timeline = _charts_drawn(browser)
    assert len(timeline) == 1 and timeline[0]["chart"] and timeline[0]["painted"] > 500
    assert "Carol (VIP)" in browser.page_source
    _save(browser, shots, "room.png")

    browser.get(f"{base}/dashboard/events")
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    assert len(rows) == 28
    rows[0].find_element(By.TAG_NAME, "a").click()
    assert "Raw body" in browser.page_source and "Normalised" in browser.page_source
    _save(browser, shots, "event.png")

    browser.get(f"{base}/dashboard/outbox")
    assert _text(browser, "outbox-pending") == "0"
    _save(browser, shots, "outbox.png")

    assert _console_errors(browser) == []


def test_phone_width_and_dark_mode(server, browser, shots):
    base = _base(server)
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{base}/dashboard?{CORPUS_PERIOD}")
        overflow = browser.execute_script(
            "return document.scrollingElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1, f"the page is {overflow} px wider than a phone"
        assert all(c["painted"] > 100 for c in _charts_drawn(browser))
        _save(browser, shots, "overview-phone.png")
    finally:
        browser.set_window_size(1280, 800)
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        browser.get(f"{base}/dashboard?{CORPUS_PERIOD}")
        dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert dark != light and dark == "rgb(13, 17, 23)"
        _save(browser, shots, "overview-dark.png")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert _console_errors(browser) == []


def test_a_delivery_appears_on_the_open_events_page(server, browser):
    browser.get(f"{_base(server)}/dashboard/events")
    before = len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr"))
    payload = corpus_json("room_created")
    payload["id"] = "live-delivery-while-watching"
    body = json.dumps(payload).encode()
    sent = time.monotonic()
    assert post(server.url, body, sign(body, KEY, SECRET))[0] == 200
    WebDriverWait(browser, 5).until(
        lambda driver: "live-delivery-while-watching" in driver.find_element(By.ID, "events").text
    )
    assert time.monotonic() - sent < 5
    assert len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == before + 1
    assert _console_errors(browser) == []


FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async (answer) => {
  const bytes = new Uint8Array(await answer.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  done({
    status: answer.status,
    type: answer.headers.get('content-type'),
    disposition: answer.headers.get('content-disposition'),
    head: String.fromCharCode(...bytes.slice(0, 5)),
    sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''),
  });
}).catch((error) => done({error: String(error)}));
"""


def test_issuing_a_month_on_the_billing_page(server, browser, shots):
    browser.get(f"{_base(server)}/dashboard/billing")
    if "/dashboard/login" in browser.current_url:  # run alone: the login leads back here
        field = browser.find_element(By.ID, "token")
        field.send_keys(ADMIN)
        field.submit()
    _wait_for(browser, "drafts")
    assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current]").text == "Billing"
    draft = browser.find_element(By.ID, "draft-acme").text
    assert "ACME Corp" in draft and "Europe/London" in draft and "USD" in draft

    month = browser.find_element(By.ID, "issue-month")
    browser.execute_script("arguments[0].value = arguments[1];", month, CORPUS_MONTH)
    Select(browser.find_element(By.ID, "issue-customer")).select_by_value("acme")
    browser.find_element(By.ID, "issue").click()
    WebDriverWait(browser, 20).until(
        lambda driver: "Issued " in driver.find_element(By.TAG_NAME, "main").text
    )
    flash = browser.find_element(By.CSS_SELECTOR, "p.flash.ok").text
    number = flash.split()[1]
    assert flash == f"Issued {number} to ACME Corp (acme) for {CORPUS_MONTH}: {CORPUS_TOTAL} USD."
    row = browser.find_element(By.ID, f"invoice-{number}")
    assert f"{CORPUS_MONTH} issued {CORPUS_TOTAL} USD" in row.text
    _save(browser, shots, "billing.png")

    href = row.find_element(By.CSS_SELECTOR, "a.invoice-pdf").get_attribute("href")
    browser.set_script_timeout(10)
    fetched = browser.execute_async_script(FETCH, href)
    engine = make_engine(server.database_url)
    try:
        with engine.connect() as conn:
            pdf = conn.execute(
                sa.select(invoices.c.pdf).where(invoices.c.number == number)
            ).scalar_one()
    finally:
        engine.dispose()
    assert fetched == {
        "status": 200,
        "type": "application/pdf",
        "disposition": f'attachment; filename="{number}.pdf"',
        "head": "%PDF-",
        "sha256": hashlib.sha256(bytes(pdf)).hexdigest(),
    }
    browser.set_window_size(390, 844)
    try:
        browser.refresh()
        overflow = browser.execute_script(
            "return document.scrollingElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1, f"the page is {overflow} px wider than a phone"
        _save(browser, shots, "billing-phone.png")
    finally:
        browser.set_window_size(1280, 800)
    assert _console_errors(browser) == []

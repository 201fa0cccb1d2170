"""The console in a real browser (Debian's headless chromium, driven by selenium through its
chromedriver) beside `cdc run --console` on the real stack: every page renders; a pause
given on the page holds the handler's changes while the other handler goes on, and a resume
runs them; a dead letter is found by a search, shown with its sensitive column masked, and
replayed from its page once the handler is fixed. Screenshots go to CDC_CONSOLE_SHOTS
(default: the test's temporary directory)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from cdc.settings import MASK
from tests.integration.conftest import Pipeline
from tests.integration.test_held_keys import HANDLERS as MIRROR
from tests.integration.test_kill import start
from tests.waiting import eventually

pytestmark = pytest.mark.stack

TOKEN = "browser-test-token-0123456789"
SECRET_EMAIL = "ada.lovelace@example.org"
# The mirror of tests/integration/test_held_keys.py (it parks a row listed in `broken`), and
# a second handler of the same table that a pause of the mirror leaves running.
HANDLERS = (
    MIRROR
    + """

@on_change("public.{items}")
def audit(change: Change, ctx: Context) -> None:
    row = change.after
    with ctx.connection() as conn:
        audited = (row["id"], row["v"])
        conn.execute("INSERT INTO {audit} SELECT %s, %s ON CONFLICT DO NOTHING", audited)
"""
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium, "apt-get install chromium (make system-deps)"
    assert driver_path, "apt-get install chromium-driver (make system-deps)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_console_pauses_and_replays_on_the_real_stack(
    pipeline: Pipeline, browser: WebDriver, tmp_path: Path
) -> None:
    p = pipeline
    items, mirror, audit, broken = (p.table(t) for t in ("items", "mirror", "audit", "broken"))
    p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, v int NOT NULL, email text)")
    p.sql(f"CREATE TABLE {mirror} (id int PRIMARY KEY, v int NOT NULL)")
    p.sql(f"CREATE TABLE {audit} (id int, v int, PRIMARY KEY (id, v))")
    p.sql(f"CREATE TABLE {broken} (id int PRIMARY KEY)")
    p.write_file({items: {"sensitive_columns": ["email"]}})
    p.apply()
    module = f"console_{p.id}"
    names = {"items": items, "mirror": mirror, "audit": audit, "broken": broken}
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(HANDLERS.format(**names)))
    shots = Path(os.environ.get("CDC_CONSOLE_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    proc = start(p, log, module, tmp_path)
    console = _console(p, tmp_path, module, port)

    def rows(table: str) -> dict[int, int]:
        return dict(p.sql(f"SELECT id, v FROM {table}"))

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    def submit(element: WebElement) -> None:
        """Click, and wait for the page it leads to (a replay takes seconds)."""
        page = browser.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(browser, 120).until(staleness_of(page))

    def handler_row(name: str) -> WebElement:
        return browser.find_element(By.CSS_SELECTOR, f'tr[data-handler="{module}.{name}"]')

    try:
        p.sql(f"INSERT INTO {items} SELECT i, 1, 'user' || i || '@example.org' "
              "FROM generate_series(1, 4) AS i")  # fmt: skip
        eventually(lambda: rows(mirror), lambda m: m == rows(items), what="the rows mirrored")
        eventually(lambda: _up(url), lambda up: up, what="the console serving")

        # Every page wants the token first.
        browser.get(f"{url}/dead-letters")
        assert "/login" in browser.current_url
        browser.find_element(By.NAME, "token").send_keys("not the token")
        submit(browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
        assert "not the console's token" in browser.page_source
        shot("01-login-refused")
        browser.find_element(By.NAME, "token").send_keys(TOKEN)
        submit(browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
        assert browser.current_url.endswith("/dead-letters"), browser.current_url
        browser.get(url)
        assert f"{module}.mirror" in browser.page_source
        eventually(
            lambda: _text(browser, url, "#workloads"),
            lambda t: "…" not in t,
            what="lag and throughput sampled",
            timeout=30,
        )
        shot("02-overview")

        # Pause the mirror on the page: its changes wait, audit's go on; resume runs them.
        row = handler_row("mirror")
        row.find_element(By.NAME, "reason").send_keys("the search cluster is down")
        submit(row.find_element(By.CSS_SELECTOR, "button.pause"))
        assert "paused" in handler_row("mirror").text
        assert "running" in handler_row("audit").text
        eventually(lambda: "control.paused" in log.read_text(), lambda x: x, what="consumer read")
        shot("03-paused")
        p.sql(f"UPDATE {items} SET v = 2")
        eventually(
            lambda: set(p.sql(f"SELECT id, v FROM {audit}")),
            lambda a: {(i, 2) for i in range(1, 5)} <= a,
            what="audit goes on",
        )
        time.sleep(2)
        assert set(rows(mirror).values()) == {1}, "a handler paused from the console ran"
        submit(handler_row("mirror").find_element(By.CSS_SELECTOR, "button.resume"))
        assert "running" in handler_row("mirror").text
        eventually(lambda: rows(mirror), lambda m: m == rows(items), what="what waited, run")

        # A dead letter: searched for, shown masked, replayed once the handler is fixed.
        p.sql(f"INSERT INTO {broken} VALUES (5)")
        p.sql(f"INSERT INTO {items} VALUES (5, 1, %s)", (SECRET_EMAIL,))
        eventually(
            lambda: _text(browser, f"{url}/dead-letters?q=mirror+refuses", "#dead-letters"),
            lambda t: f"{items}" in t,
            what="the dead letter listed",
        )
        assert SECRET_EMAIL not in browser.page_source
        shot("04-dead-letters")
        submit(browser.find_element(By.CSS_SELECTOR, "#dead-letters tbody a"))
        payload = browser.find_element(By.ID, "payload").text
        assert MASK in payload, payload
        assert '"id": 5' in payload, payload
        assert SECRET_EMAIL not in browser.page_source
        shot("05-dead-letter")
        p.sql(f"DELETE FROM {broken}")
        submit(browser.find_element(By.CSS_SELECTOR, "button.replay"))
        flash = browser.find_element(By.CSS_SELECTOR, ".flash").text
        assert "1 handled" in flash, flash
        assert rows(mirror).get(5) == 1
        assert "yes" in browser.find_element(By.CSS_SELECTOR, "table.fields").text
        shot("06-replayed")

        for page, expect in (("/connector", "RUNNING"), ("/controls", "no skip in force")):
            browser.get(f"{url}{page}")
            assert expect in browser.page_source, page
            shot(f"07{page.replace('/', '-')}")
    finally:
        for running in (console, proc):
            running.terminate()
            running.wait(timeout=60)
        assert SECRET_EMAIL not in (tmp_path / "console.log").read_text()


def _console(p: Pipeline, cwd: Path, module: str, port: int) -> subprocess.Popen[str]:
    """`cdc console` against the running group, as an operator starts it."""
    env = {
        **os.environ,
        **p.stack.env(),
        "CDC_WATCHED_TABLES": str(p.file),
        "CDC_GROUP_ID": p.id,
        "CDC_CONSOLE_TOKEN": TOKEN,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cdc", "console", "--handlers", module, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=(cwd / "console.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _up(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
            return True
    except OSError:
        return False


def _text(browser: WebDriver, url: str, selector: str) -> str:
    browser.get(url)
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)

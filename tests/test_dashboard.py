"""The web dashboard in a real browser: Debian's headless chromium, driven by Selenium
through Debian's chromedriver, against ``mailsift api`` and ``mailsift worker`` run as a
user runs them (subprocesses), the simulated world and the shared local stack.

One test walks the whole path a list owner takes: log in, upload a 2,000-row CSV, watch
it reach 100 % with the charts drawn, download "deliverable only" and check its rows
against the job's verdicts, take a screenshot (not blank), then delete the job.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from mailsift.settings import Settings
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    free_port,
    pipeline_env,
    running_world,
)

pytestmark = [pytest.mark.stack]

TOKEN = "dash-" + uuid.uuid4().hex
DOMAINS, PER_DOMAIN, MAILBOXES = 80, 25, 20  # user0..user19 exist on each bulk domain


@pytest.fixture(scope="module")
def world() -> Iterator[WorldProcess]:
    with running_world("--bulk", str(DOMAINS), "--bulk-mailboxes", str(MAILBOXES)) as w:
        yield w


@pytest.fixture(scope="module")
def dashboard(stack: Settings, world: WorldProcess,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mailsift worker`` and ``mailsift api`` on a private pipeline: the page's URL."""
    logs = tmp_path_factory.mktemp("dashboard")
    env = pipeline_env(world, MAILSIFT_API_TOKENS=TOKEN, MAILSIFT_MX_MAX_RCPT_PER_SECOND="200",
                       MAILSIFT_API_RATE="100", MAILSIFT_API_BURST="200")
    worker = WorkerProcess(env, logs / "worker.log")
    port = free_port()
    api = WorkerProcess(env, logs / "api.log", command=("api", "--port", str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).close()
                break
            except OSError:
                assert api.alive(), api.log_text()[-3000:]
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.3)
        yield url
        assert worker.alive(), worker.log_text()[-3000:]
        assert api.alive(), api.log_text()[-3000:]
    finally:
        api.stop()
        worker.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "scripts/bootstrap installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,1400", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(tmp_path), "download.prompt_for_download": False})
    with webdriver.Chrome(service=Service(driver), options=options) as chrome:
        chrome.execute_cdp_cmd("Page.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(tmp_path)})
        yield chrome


def _list_csv(path: Path) -> list[dict[str, str]]:
    """2,000 rows in a shuffled-looking order: 80 domains × 25 addresses (user0..user19
    exist), a few duplicates in another case and a few that are not addresses."""
    rows = []
    for i in range(DOMAINS * PER_DOMAIN - 40):
        slot = (i * 7919) % (DOMAINS * PER_DOMAIN)  # a permutation: no domain is grouped
        d, u = slot % DOMAINS, slot // DOMAINS
        rows.append({"id": str(i), "name": f"Person {i}", "email": f"user{u}@bulk{d}.test",
                     "notes": "a, quoted \"note\"" if i % 50 == 0 else ""})
    for j in range(30):  # duplicates: the same address in capitals
        src = rows[j * 13]
        rows.append({**src, "id": f"d{j}", "email": src["email"].upper()})
    for k in range(10):
        rows.append({"id": f"x{k}", "name": "Typo", "email": f"not an address {k}", "notes": ""})
    assert len(rows) == 2000
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "name", "email", "notes"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _api(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read().decode()
        return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


def _wait_for_file(folder: Path, name: str, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = folder / name
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.2)
    raise AssertionError(f"no {name} in {sorted(p.name for p in folder.iterdir())}")


def _not_blank(png: Path) -> None:
    image = Image.open(png).convert("RGB")
    pixels = image.tobytes()
    colours = Counter(pixels[i:i + 3] for i in range(0, len(pixels), 3))
    assert image.width >= 600 and image.height >= 600
    most = colours.most_common(1)[0][1] / (image.width * image.height)
    assert len(colours) > 50 and most < 0.97, (len(colours), most)


def test_upload_progress_charts_download_and_delete_in_chromium(
        dashboard: str, browser: WebDriver, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 30)
    rows = _list_csv(tmp_path / "leads.csv")

    # the login form; a wrong token is refused on the page
    browser.get(dashboard + "/")
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait.until(ec.presence_of_element_located((By.ID, "upload-form")))
    cookie = browser.get_cookie("mailsift_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # on loopback: Secure only off it

    # every control has a label, and the page fits 320 px without scrolling sideways
    unlabelled = browser.execute_script("""
        return [...document.querySelectorAll('input:not([type=hidden]), select')]
          .filter(e => !document.querySelector(`label[for="${e.id}"]`)).map(e => e.id);""")
    assert unlabelled == []

    # upload: the picker, the column detected from the header, the file's name as the name
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "leads.csv"))
    wait.until(lambda b: Select(b.find_element(By.ID, "column")).first_selected_option
               .get_attribute("value") == "email")
    assert browser.find_element(By.ID, "name").get_attribute("value") == "leads.csv"
    browser.find_element(By.ID, "submit").click()
    wait.until(ec.url_contains("/jobs/"))
    job_id = browser.current_url.rsplit("/", 1)[1]

    # live progress to 100 %, the charts drawn
    WebDriverWait(browser, 240).until(
        lambda b: b.find_element(By.CSS_SELECTOR, "main[data-job]").get_attribute(
            "data-status") == "completed")
    assert browser.find_element(By.ID, "percent").text == "100 %"
    assert browser.find_element(By.ID, "done").text == "2,000 of 2,000"
    assert browser.find_element(By.ID, "eta").text == "done"
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-verdicts rect")
    assert len(bars) == 4
    widths = {b.get_attribute("class"): float(b.get_attribute("width") or 0) for b in bars}
    assert widths["bar-deliverable"] > widths["bar-undeliverable"] > 0
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-reasons rect")
    status = _api(dashboard, f"/v1/jobs/{job_id}")
    assert status["status"] == "completed" and status["name"] == "leads.csv"
    assert browser.find_element(By.ID, "count-deliverable").text == (
        f"{status['counts']['deliverable']:,}")

    # "deliverable only": the input's columns first, in input order, each row deliverable
    # exactly where the job's verdicts say so
    browser.find_element(By.CSS_SELECTOR, "a[data-verdict=deliverable]").click()
    got = _wait_for_file(tmp_path, f"mailsift-{job_id}-deliverable.csv")
    table = list(csv.DictReader(io.StringIO(got.read_text())))
    assert list(table[0])[:4] == ["id", "name", "email", "notes"]
    everything = list(csv.DictReader(io.StringIO(_api(
        dashboard, f"/v1/jobs/{job_id}/results?format=csv&download=true"))))
    assert [r["id"] for r in everything] == [r["id"] for r in rows]
    expected = [r for r in everything if r["verdict"] == "deliverable"]
    assert [r["id"] for r in table] == [r["id"] for r in expected]
    assert all(r["verdict"] == "deliverable" for r in table)
    exists = {f"user{u}" for u in range(MAILBOXES)}
    assert {r["email"].split("@")[0].lower() for r in table} <= exists
    assert len(table) == sum(1 for r in rows if r["email"].split("@")[0].lower() in exists)
    dup = next(r for r in table if r["id"].startswith("d"))
    first = rows[int(dup["duplicate_of"]) - 2]  # line 1 is the header
    assert first["email"] == dup["email"].lower() and first["id"] != dup["id"]

    # a screenshot that is not blank (also what the README shows)
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "job.png"
    browser.save_screenshot(str(shot))
    _not_blank(shot)
    if os.environ.get("MAILSIFT_SCREENSHOT_DIR"):  # how docs/dashboard.png is made
        shutil.copy(shot, Path(os.environ["MAILSIFT_SCREENSHOT_DIR"], "dashboard.png"))

    # the list shows the job; at 320 px the page does not scroll sideways
    browser.get(dashboard + "/")
    wait.until(ec.presence_of_element_located((By.LINK_TEXT, "leads.csv")))
    browser.set_window_size(320, 900)
    browser.get(dashboard + f"/jobs/{job_id}")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth") <= 320 + 1
    browser.set_window_size(1100, 1400)

    # delete (confirmed): gone from the page and from the API
    browser.find_element(By.CSS_SELECTOR, "#delete-form button").click()
    wait.until(ec.alert_is_present()).accept()
    wait.until(ec.url_contains("/?deleted="))
    assert not browser.find_elements(By.LINK_TEXT, "leads.csv")
    with pytest.raises(urllib.error.HTTPError) as gone:
        _api(dashboard, f"/v1/jobs/{job_id}")
    assert gone.value.code == 404

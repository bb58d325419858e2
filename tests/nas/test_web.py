"""The web page in a real headless Chromium (Debian's chromium and chromedriver, driven by Selenium):
submit a job from the form, watch it finish, see the front plotted, click through to a trial, download."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nas.conftest import LiveServer, tiny_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        reason = "headless Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Any, *, timeout_s: float = 60, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the page is still rendering
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_watch_plot_click_and_download(live_server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from selenium.webdriver.support.ui import Select

    service = live_server.service
    browser.get(f"{live_server.url}/#token={service.tokens['submit']}")
    wait_for(lambda: browser.find_element(By.ID, "data-file"), what="the submit form")
    assert browser.execute_script("return location.hash") == "#/", "the token must leave the address bar"
    spec = tiny_spec(service.corpus)

    def fill(element_id: str, value: str) -> None:
        field = browser.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)

    # a person's form: a file to upload, the device from the list, the target, the budget
    browser.find_element(By.ID, "data-file").send_keys(str(service.corpus))
    Select(browser.find_element(By.ID, "device")).select_by_value("cpu-1t")
    fill("space-options", json.dumps(spec["space_options"]))
    fill("budget-trials", "10")
    fill("budget-steps", "2")
    Select(browser.find_element(By.ID, "search-mode")).select_by_value("standalone")
    fill("latency-target", "99999999")  # refused: the problem shows beside its field, and nothing is stored
    browser.find_element(By.ID, "submit-job").click()
    refusal = wait_for(lambda: browser.find_element(By.ID, "error-target").text, what="the refusal beside the field")
    assert refusal.startswith("latency_target_ms:") and service.storage.count_jobs() == 0
    fill("latency-target", "0.5")
    browser.find_element(By.ID, "submit-job").click()

    job_hash = wait_for(lambda: (h := browser.execute_script("return location.hash")).startswith("#/jobs/") and h,
                        what="the job page")
    job_id = int(job_hash.split("/")[-1])
    assert service.storage.get_job(job_id).latency_target_ms == 0.5
    stored = service.storage.get_job(job_id).spec
    assert stored["search"]["mode"] == "standalone" and stored["strategy"] == "nsga2"  # the form's choice, its default
    assert service.storage.get_job(job_id).spec["task"]["train"].startswith("dataset:sha256:")  # uploaded
    wait_for(lambda: browser.find_element(By.ID, "job-state").text == "completed", timeout_s=90,
             what="the job to finish")

    front = [m.trial.number for m in service.storage.front(job_id)]
    plotted = wait_for(lambda: browser.execute_script(
        "const c = window.hwnas.charts.pareto; return c && c.data.datasets[0].data.map(p => p.trial)"),
        what="the front plotted")
    assert sorted(plotted) == sorted(front) and front
    target_line = browser.execute_script(
        "return window.hwnas.charts.pareto.data.datasets.find(d => d.label.startsWith('target')).data.map(p => p.x)")
    assert target_line == [0.5, 0.5]
    infeasible = browser.execute_script("return window.hwnas.charts.pareto.data.datasets[3].data.length")
    assert infeasible == sum(t.state == "infeasible" for t in service.storage.trials(job_id))
    stopped = browser.execute_script("return window.hwnas.charts.pareto.data.datasets[4]")
    assert stopped["label"].startswith("stopped early") and len(stopped["data"]) == sum(
        t.state == "stopped" for t in service.storage.trials(job_id))
    browser.save_screenshot(str(browser.downloads.parent / "pareto-page.png"))
    shutil.copy(browser.downloads.parent / "pareto-page.png", "/tmp/pareto-page.png")

    # download the exported checkpoint from the front table
    checkpoint = service.storage.checkpoints(job_id)[-1]
    browser.find_element(By.CSS_SELECTOR, "button.download[data-trial]").click()
    archive = browser.downloads / Path(checkpoint.archive_path).name
    wait_for(lambda: archive.is_file() and not list(browser.downloads.glob("*.crdownload")), what="the download")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == checkpoint.sha256

    # click a front point: the trial page opens
    x, y = browser.execute_script(
        "const p = window.hwnas.charts.pareto.getDatasetMeta(0).data[0]; return [p.x, p.y]")
    canvas = browser.find_element(By.ID, "pareto")
    ActionChains(browser).move_to_element_with_offset(canvas, x - canvas.size["width"] / 2,
                                                      y - canvas.size["height"] / 2).click().perform()
    wait_for(lambda: "/trials/" in browser.execute_script("return location.hash"), what="the trial page")
    number = int(browser.execute_script("return location.hash").split("/")[-1])
    assert number == plotted[0]
    trial_text = wait_for(lambda: browser.find_element(By.ID, "trial").text, what="the trial's details")
    assert service.storage.trial(job_id, number).arch_hash in trial_text
    # the page works under its Content-Security-Policy: the browser reported no violation
    violations = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert violations == []

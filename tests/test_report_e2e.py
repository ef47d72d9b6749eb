"""`curate report` on a small real dataset, opened in a real browser (Debian's headless Chromium).

The dataset is made the way the labels test makes one: real H.264 files (plus a corrupt file
and a too-short clip), the scripted teacher and verifier over HTTP, `curate run` through a local
Ray. The report's numbers are checked against the rows read back with `datasets` (not with the
report's code); the page is opened from disk with no server, and Chromium must draw every plot,
log no console error, show a QA item's evidence-span frames, and filter the browser.
Screenshots are saved (in the test's tmp folder, and in $REPORT_SCREENSHOTS when set).
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest

from tests.helpers import curate
from tests.report_dataset import build_dataset

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ray_address) -> Path:
    return build_dataset(tmp_path_factory.mktemp("report"), runs=1, address=ray_address)


@pytest.fixture(scope="module")
def report(dataset, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("html") / "report"
    proc = curate("report", str(dataset), "--to", str(dest), "--videos", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"sample browser: 3 videos, \d+ items, \d+ frames", proc.stdout), proc.stdout
    return dest


def _report_data(dest: Path) -> dict:
    text = (dest / "data" / "report.js").read_text()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def test_report_numbers_match_the_rows(dataset, report):
    videos = datasets.load_dataset(str(dataset), "videos", split="train")
    sft = datasets.load_dataset(str(dataset), "sft", split="train")
    rejects = datasets.load_dataset(str(dataset), "rejects", split="train")
    data = _report_data(report)
    funnel = {step: n for plot in ("video_funnel", "qa_funnel")
              for step, n in zip(data["figures"][plot]["data"][0]["y"], data["figures"][plot]["data"][0]["x"])}
    assert funnel["inputs"] == len(videos) == 5
    assert funnel["accepted"] == Counter(videos["status"])["accepted"] == 3
    assert funnel["sft"] == len(sft)
    qa_rejects = [r for r in rejects if r["target_config"] == "qa"]
    assert funnel["QA written"] == len(sft) + len(qa_rejects)
    decisions = Counter(r["verification"]["decision"] for r in sft)
    assert funnel["kept"] == decisions["keep"] and funnel["hard"] == decisions["hard"]
    verifier_rejects = [r for r in qa_rejects if "verification" in json.loads(r["row_json"])]
    assert verifier_rejects and funnel["verifier rejected"] == len(verifier_rejects)
    # every QA item of the sampled videos (all 3) is in the browser: kept and rejected ones
    assert len(data["index"]["items"]) == len(sft) + len(qa_rejects)
    assert {i["decision"] for i in data["index"]["items"]} >= {"keep", "reject", "refused"}
    # multiple-choice answer letters, counted here from the rows
    mc = [r for r in sft if r["format"] == "multiple_choice"]
    letters = Counter("ABCD"[r["options"].index(r["answer"])] for r in mc)
    plot = data["figures"]["letters"]["data"][0]
    assert {k: v for k, v in zip(plot["x"], plot["y"]) if v} == dict(letters) and sum(letters.values()) == len(mc)
    # histograms are binned: the durations plot counts every accepted video once
    assert sum(data["figures"]["durations"]["data"][0]["y"]) == 3
    assert data["figures"]["tokens"] is None and "tokens" in data["absent"]
    # frames are files beside the page, small
    frames = list((report / "frames").rglob("*.jpg"))
    assert frames and all(f.stat().st_size < 30_000 for f in frames)
    # offline: nothing the page loads names a host
    page = (report / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert re.findall(r'src="([^"]+)"', page) == ["assets/plotly.min.js", "data/report.js", "assets/app.js"]


def _driver():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(f"Debian's chromium and chromium-driver are not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                    "run .ci/browser-env")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the system driver, given explicitly: Selenium Manager never looks for (or downloads) one
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _shots_dir(report: Path) -> Path:
    shots = Path(os.environ.get("REPORT_SCREENSHOTS") or report.parent / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def test_report_opens_in_chromium_from_disk(report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    data = _report_data(report)
    drawn = [k for k, v in data["figures"].items() if v is not None]
    shots = _shots_dir(report)
    driver = _driver()
    try:
        driver.get((report / "index.html").as_uri())
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script(
            "return Array.from(arguments[0]).every(id => { const e = document.getElementById('plot-' + id);"
            " return e && e.dataset.drawn === '1' && e.querySelector('.main-svg'); })", drawn))
        # the absent plot says why instead of drawing
        assert "tokens" in driver.find_element(By.ID, "plot-tokens").text
        # the first item is shown with its frames decoded (naturalWidth > 0: the JPEG loaded)
        wait.until(lambda d: d.execute_script(
            "const imgs = document.querySelectorAll('#detail img.span-frame');"
            " return imgs.length > 0 && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0)"))
        wait.until(lambda d: d.execute_script(
            "return document.querySelectorAll('#detail img.keyframe').length > 0"))
        driver.save_screenshot(str(shots / "report-top.png"))
        # a filter: only the items the verifier or the checks rejected
        Select(driver.find_element(By.ID, "f-decision")).select_by_value("refused")
        rows = driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")
        expected = [i for i in data["index"]["items"] if i["decision"] == "refused"]
        assert rows and all(r.find_elements(By.TAG_NAME, "td")[3].text == "refused" for r in rows)
        assert driver.find_element(By.ID, "match-count").text.startswith(f"{len(expected)} of ")
        wait.until(lambda d: "refused" in d.find_element(By.ID, "detail").text)
        # back to all items, the random-sample button picks one that is shown
        Select(driver.find_element(By.ID, "f-decision")).select_by_value("keep")
        driver.find_element(By.ID, "random").click()
        wait.until(lambda d: d.execute_script(
            "const d = document.getElementById('detail'); return d.dataset.item &&"
            " d.querySelectorAll('img.span-frame').length > 0"))
        driver.execute_script("document.getElementById('browser').scrollIntoView()")
        driver.save_screenshot(str(shots / "report-browser.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
    assert (shots / "report-top.png").stat().st_size > 10_000

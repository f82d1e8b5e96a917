"""`ailab leaderboard`: the static page from real scorecards, and the served page in headless Chromium.

The browser test drives Debian's `chromium` through its `chromedriver` with selenium; it is skipped
(saying so) only where neither is installed. `.ci/run` installs them when it can.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graders.engine.report import write_report
from graders.engine.scorecard import Scorecard
from graders.leaderboard import PAGE, load_entries, overall, ranked, write_leaderboard

PARTS = {"rag": (("chunking", 10), ("retrieval_quality", 60), ("performance", 30)),
         "serving": (("correctness", 40), ("goodput", 60))}
METRICS = {"rag": {"ndcg@10": 0.61, "recall@100": 0.9, "latency_p95_ms": 12.5, "throughput_qps": 400.0},
           "serving": {"goodput_rps": 8.5, "ttft_p95_ms": 90.0}}
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and os.path.exists(p)), None)


def add_card(root: Path, lab: str, name: str, fractions: tuple[float, ...], errors: list[str] | None = None) -> Scorecard:
    """A scorecard and its report.html as `ailab grade LAB SUB --out ROOT/LAB` leaves them."""
    card = Scorecard(lab=lab, submission=name, metrics=dict(METRICS[lab]), errors=errors or [])
    for (part, points), fraction in zip(PARTS[lab], fractions):
        card.add(part, fraction, points, f"{part}: {fraction:.0%}")
    card.add("written", 0.0, 0.0, "graded by hand in formgrader")
    card.total()
    folder = root / lab / card.slug
    card.write(folder)
    write_report(card, folder / "report.html")
    return card


@pytest.fixture
def board(tmp_path: Path) -> Path:
    root = tmp_path / "graded"
    add_card(root, "rag", "reference", (1, 1, 1))
    add_card(root, "rag", "ada", (1, 0.9, 1))  # 94
    add_card(root, "rag", "bob", (0.5, 0.5, 0.5))  # 50
    add_card(root, "rag", "cy", (0.5, 0.5, 0.5))  # 50: ties bob
    add_card(root, "serving", "ada", (1, 0.5))  # 70
    add_card(root, "serving", "bob", (0, 0), errors=["server never became ready"])  # 0
    return root


def test_ranks_and_overall_means(board: Path):
    entries, problems = load_entries(board)
    assert not problems and len(entries) == 6
    rag = [(rank, e.submission, e.score) for rank, e in ranked([e for e in entries if e.lab == "rag"])]
    assert rag == [(1, "ada", 94.0), (2, "bob", 50.0), (2, "cy", 50.0), (None, "reference", 100.0)]
    assert [(r, p, round(m, 2)) for r, p, _, m in overall(entries)] == [(1, "ada", 82.0), (2, "cy", 50.0), (3, "bob", 25.0)]


def test_static_page_links_reports_and_notes_unreadable_cards(board: Path):
    (board / "broken").mkdir()
    (board / "broken" / "scorecard.json").write_text("{not json")
    page = write_leaderboard(board).read_text()
    assert page.count("<img alt=\"plot\" src=\"data:image/png;base64,") == 5  # overall + 2 per lab
    for lab, name in (("rag", "ada"), ("rag", "cy"), ("serving", "bob")):
        href = f"{lab}/{name}/report.html"
        assert f"href='{href}'" in page and (board / href).exists()
    assert "broken/scorecard.json: JSONDecodeError" in page
    assert "server never became ready" in page
    assert not re.search(r"<th>written", page), "a part worth no points here gets no column"


def _start_server(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    ailab = Path(sys.executable).parent / "ailab"
    cmd = [str(ailab)] if ailab.exists() else [sys.executable, "-m", "graders.cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "leaderboard", str(root), "--serve", "--port", "0", "--duration", "240"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", log.read_text())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    pytest.fail(f"leaderboard server did not start: {log.read_text()}")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="no browser: install Debian's chromium and chromium-driver (`.ci/run` does when root)")
@pytest.mark.slow
def test_served_leaderboard_in_headless_chromium(board: Path, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = _start_server(board, tmp_path / "server.log")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1800",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.set_page_load_timeout(30)
        driver.get(url)  # "/" redirects to the page
        assert driver.current_url.endswith(f"/{PAGE}") and driver.title == "ailab leaderboard"

        def rows(lab: str) -> list[tuple[str, str, str]]:
            return [tuple(td.text for td in tr.find_elements(By.TAG_NAME, "td")[:3])  # type: ignore[misc]
                    for tr in driver.find_elements(By.CSS_SELECTOR, f"table.lab[data-lab='{lab}'] tr[data-submission]")]

        assert rows("rag") == [("1", "ada", "94"), ("2", "bob", "50"), ("2", "cy", "50"), ("ref", "reference", "100")]
        assert [r[:2] for r in rows("serving")] == [("1", "ada"), ("2", "bob (1 error)")]
        means = [tr.find_elements(By.TAG_NAME, "td")[-1].text
                 for tr in driver.find_elements(By.CSS_SELECTOR, "table.overall tr[data-submission]")]
        assert means == ["82.0", "50.0", "25.0"]
        images = driver.find_elements(By.CSS_SELECTOR, ".plots img")
        assert len(images) == 5
        widths = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) for img in images]
        assert all(isinstance(w, int) and w > 100 for w in widths), widths

        version = driver.execute_script("return document.documentElement.dataset.version")
        add_card(board, "serving", "dee", (1, 1))  # a scorecard lands while the page is open
        WebDriverWait(driver, 30, poll_frequency=0.5).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "table.lab[data-lab='serving'] tr[data-submission='dee']"))
        assert driver.execute_script("return document.documentElement.dataset.version") != version
        assert rows("serving")[0] == ("1", "dee", "100")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".plots img")) == 5

        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        driver.find_element(By.CSS_SELECTOR, "tr[data-submission='dee'] a").click()
        assert driver.current_url.endswith("/serving/dee/report.html") and "dee" in driver.title
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, (tmp_path / "server.log").read_text()

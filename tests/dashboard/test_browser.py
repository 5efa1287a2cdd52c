"""A real browser: `autopeft dashboard` on a free port over a finished quickstart-sized study, driven with
Playwright through Debian's chromium (Playwright never downloads a browser here; without chromium the
test skips). Screenshots go to the test's folder; the study page's also to docs/dashboard-study.png."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app as cli
from tests.dashboard.studies import fill

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AUTOPEFT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
#: The rendered markers of the study page's front trace (plotly binds each trace group's data to it).
FRONT_POINTS_JS = """() => {
  const groups = Array.from(document.querySelectorAll('.js-plotly-plot g.trace.scatter'))
    .filter(g => g.__data__ && g.__data__[0] && g.__data__[0].trace.name === 'Pareto front');
  return groups.length ? groups[0].querySelectorAll('path.point').length : -1;
}"""

FRONT_POINT_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot g.trace.scatter'))
  .find(g => g.__data__ && g.__data__[0] && g.__data__[0].trace.name === 'Pareto front').querySelector('path.point')"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"autopeft dashboard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard did not answer on port {port} within {timeout:.0f} s")


@pytest.fixture
def dashboard(tmp_path: Path, tiny_model_dir: Path) -> Iterator[tuple[str, list[int]]]:
    """`autopeft dashboard` over a finished study `demo` (the quickstart's budget of 8 full trials), and its
    front's trial numbers as `autopeft pareto` prints them."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium; Playwright must not download one)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
    url = f"sqlite:///{tmp_path / 'autopeft.db'}"
    fill(url, "demo", tiny_model_dir, tmp_path, budget=8)
    fill(url, "random-baseline", tiny_model_dir, tmp_path, budget=4, strategy="random")
    result = CliRunner().invoke(cli, ["pareto", "demo", "--storage", url, "--format", "json"])
    import json

    front = sorted(row["trial"] for row in json.loads(result.stdout))
    port = _free_port()
    # From the store's folder with the default-style relative URL, as a user would (and as the picture shows).
    process = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "dashboard", "--storage", "sqlite:///autopeft.db",
                                "--port", str(port)], cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}", front
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: Streamlit, which the command became
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_dashboard_in_a_real_browser(dashboard: tuple[str, list[int]], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, front = dashboard
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1800})
            page.set_default_timeout(90_000)
            expect.set_options(timeout=60_000)
            page.goto(base)
            expect(page.get_by_role("heading", name="Studies")).to_be_visible()
            expect(page.get_by_text("random-baseline").first).to_be_visible()
            page.screenshot(path=str(shots / "studies.png"))

            page.get_by_role("link", name="demo", exact=True).click()  # a click on a study opens it
            expect(page.get_by_role("heading", name="Study demo")).to_be_visible()
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5")
            page.wait_for_function(f"() => ({FRONT_POINTS_JS.strip()})() >= 0")
            assert page.evaluate(FRONT_POINTS_JS) == len(front)  # the chart shows every front trial, no more
            for section in ("Hypervolume history", "Learning curves across rungs",
                            "Where the adapters go (front trials)"):
                expect(page.get_by_role("heading", name=section)).to_be_visible()
            page.set_viewport_size({"width": 1440, "height": 3300})  # the picture: front to plan grid
            page.wait_for_timeout(2000)  # let the figures redraw at their place before the picture
            page.screenshot(path=str(shots / "study.png"))
            page.set_viewport_size({"width": 1440, "height": 1800})

            # A click on a point of the front opens that trial (Streamlit's point selection of the plotly chart).
            point = page.evaluate_handle(FRONT_POINT_JS).as_element()
            assert point is not None
            point.scroll_into_view_if_needed()
            box = point.bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 3, y - 3)
            page.mouse.move(x, y, steps=3)  # plotly clicks the point under its hover
            page.wait_for_timeout(300)
            page.mouse.click(x, y)
            expect(page.get_by_role("heading", name=re.compile(r"^Trial \d+ of demo$"))).to_be_visible()
            heading = page.get_by_role("heading", name=re.compile(r"^Trial \d+ of demo$")).inner_text()
            assert int(heading.split()[1]) in front
            # Not waited for here: its export, built in memory (the first one imports torch in the server, which
            # on a loaded 2-core machine has stalled the server's websocket); tests/dashboard/test_pages.py checks
            # the downloads byte for byte.
            page.screenshot(path=str(shots / "trial.png"))

            page.goto(f"{base}/?study=demo")
            picked = page.locator("p", has_text="picked trial").get_by_role("link").first  # the picker's choice
            number = int(picked.inner_text().split()[-1])
            picked.click()  # a trial link opens the trial page
            expect(page.get_by_role("heading", name=f"Trial {number} of demo")).to_be_visible(timeout=180_000)
            page.screenshot(path=str(shots / "picked-trial.png"))
        finally:
            browser.close()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(shots / "study.png", docs / "dashboard-study.png")

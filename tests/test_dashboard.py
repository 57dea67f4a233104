"""`eilab dashboard`: optuna-dashboard serves a study's trials over HTTP on loopback, and headless Chromium (Debian's
chromium driven by playwright) shows them; the screenshot is kept in tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import os
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
from search_helpers import load, write_study

from conftest import ROOT, eilab

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A study of two trials and `eilab dashboard` serving its storage on a free loopback port; stopped after."""
    config = write_study(tmp_path, budget={"trials": 2})
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "eilab.cluster.cli", "dashboard", str(config), "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                get_json(f"{base}/api/meta")
                break
            except OSError:
                time.sleep(0.2)
        assert server.poll() is None, server.communicate()[0]
        yield base, config
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)


def test_dashboard_serves_the_trials(dashboard: tuple[str, Path]) -> None:
    base, config = dashboard
    study = load(config)
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["tiny"]
    detail = get_json(f"{base}/api/studies/{summaries[0]['study_id']}")
    assert [t["number"] for t in detail["trials"]] == [0, 1]
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
    assert [t["values"][0] for t in detail["trials"]] == pytest.approx([t.value for t in study.trials])

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium for the browser half of this test")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-trials.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/dashboard/studies/{summaries[0]['study_id']}/trials", wait_until="networkidle")
            page.get_by_text("vars.S_EE").first.wait_for(timeout=30000)
            text = page.inner_text("body")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert "Trial 0" in text and "Trial 1" in text, text[:2000]
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, config.parent / shot.name)  # beside the test's study too

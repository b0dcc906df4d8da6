"""The app's Streamlit settings, as Streamlit itself reads them from the repository root (where
``make run``, the Dockerfile and the browser tests start it): local and private, and no forced
garbage collection after every script run (it slowed training 3-6x while a page polled)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READ = ("import json; from streamlit import config; print(json.dumps({k: config.get_option(k) for k in "
        "['server.address', 'server.headless', 'browser.gatherUsageStats', 'runner.postScriptGC']}))")


def _options(cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", READ], cwd=cwd, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_streamlit_reads_the_repositorys_settings(tmp_path):
    assert _options(REPO) == {"server.address": "127.0.0.1", "server.headless": True,
                              "browser.gatherUsageStats": False, "runner.postScriptGC": False}
    assert _options(tmp_path)["runner.postScriptGC"] is True  # Streamlit's default elsewhere: the file is what sets it

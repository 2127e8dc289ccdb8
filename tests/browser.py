"""A real headless Chromium for the tests that check what a page shows."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage")


def chromium() -> str:
    """The browser's path, or a skip that says how to get one (`make test` installs it)."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium here: install Debian's chromium (make test does, as root) to run "
                "the browser tests")


def _run(profile: Path, url: str, budget_ms: int, timeout: float) -> str:
    proc = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
         "--dump-dom", url], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _set_consent_cookie(profile: Path, host: str) -> None:
    """Netron's page waits for a click on its cookie notice (offline it cannot tell the
    country) before it opens the model; a cookie set beforehand is what that click leaves."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "consent.html").write_text(
            "<script>document.cookie = 'consent=' + Date.now() + '; max-age=86400; path=/';"
            "</script>", encoding="utf-8")
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
        handler.log_message = lambda *args: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer((host, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:  # cookies belong to the host, whatever the port
            _run(profile, f"http://{host}:{server.server_address[1]}/consent.html", 2_000, 60)
        finally:
            server.shutdown()
            server.server_close()


def dump_dom(url: str, *, budget_ms: int = 10_000, timeout: float = 120,
             netron: bool = False) -> str:
    """The page's DOM after its scripts ran, as Chromium serialises it; ``netron``: a page
    served by Netron, whose cookie notice is answered first."""
    with tempfile.TemporaryDirectory() as profile:
        if netron:
            _set_consent_cookie(Path(profile), urlsplit(url).hostname or "127.0.0.1")
        return _run(Path(profile), url, budget_ms, timeout)


def screenshot(url: str, target: Path, *, width: int = 1280, height: int = 1000,
               budget_ms: int = 15_000, timeout: float = 120) -> Path:
    """A PNG of what the page shows at ``url`` (its scripts run, its frames drawn), offline:
    every host name is unresolvable."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={target}", url],
            capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0 and target.exists(), proc.stderr[-2000:]
    return target

"""Headless Chromium for tests: the DOM, a screenshot and the console messages of a local page.

Why the bare command line and not Playwright or Selenium: Debian's ``chromium`` package is one
apt install, needs no driver download, and its flags do all a test needs. Console messages come
from Chromium's own log (``--enable-logging=stderr``): every console call, uncaught exception and
Content-Security-Policy violation is logged as ``INFO:CONSOLE:…] "message", source: url (line)``.
The log does not say which console level a line had, so callers get every message; a page
without scripts (the report) should produce none at all.

Network: the browser only opens ``file://`` pages and every host name resolves to nothing
(``--host-resolver-rules``), so a page that tries to fetch something fails loudly instead of
reaching out.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = "apt-get update && apt-get install -y chromium fonts-dejavu-core"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r':CONSOLE(?:\(\d+\))?(?::\d+)?\] (".*)$')


class ChromiumMissing(AssertionError):
    """An AssertionError on purpose: a missing browser fails the test run, it is not a skip."""


def chromium() -> str:
    """Path of the Chromium binary (env CHROMIUM overrides), or fail with the install command."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ChromiumMissing(f"Chromium is needed to test the HTML report and is not installed; as root run: {INSTALL}")


@dataclass
class Run:
    stdout: str
    console: list[str] = field(default_factory=list)
    returncode: int = 0


def run(page: str | Path, *extra: str, timeout: float = 90) -> Run:
    """Open ``page`` (a local file) in a fresh headless Chromium with ``extra`` flags."""
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
        # Own session, so a hung browser and its helper processes can be killed as one group: ours.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"chromium did not finish within {timeout} s on {url}") from None
    console = [m.group(1) for m in map(_CONSOLE.search, err.splitlines()) if m]
    console += [line for line in err.splitlines() if "Uncaught" in line and ":CONSOLE" not in line]
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode} on {url}:\n{err[-3000:]}")
    return Run(out, console, proc.returncode)


def dump_dom(page: str | Path) -> Run:
    """The DOM after the page loaded (serialised by Chromium), with the page's console messages."""
    return run(page, "--dump-dom")


def screenshot(page: str | Path, png: str | Path, width: int = 1280, height: int = 2400) -> Run:
    """Save a ``width`` x ``height`` PNG of the page's top to ``png``."""
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    Path(png).unlink(missing_ok=True)
    result = run(page, f"--screenshot={Path(png).resolve()}", f"--window-size={width},{height}")
    if not Path(png).exists():
        raise AssertionError(f"chromium wrote no screenshot to {png}: {result.stdout[-2000:]}")
    return result

"""Drive headless Chromium like a person: real mouse clicks and typing, over the DevTools protocol.

Why: ``browser.py`` loads a page and reads it, which cannot show that clicking a table header
sorts it. Here Chromium runs with ``--remote-debugging-pipe`` (the protocol over two file
descriptors, 3 and 4, NUL-separated JSON: no port, no websocket library, no network), and the
test sends ``Input.dispatchMouseEvent`` at an element's on-screen position and
``Input.insertText`` into a focused box, the same events a person's mouse and keyboard make.
Console calls, uncaught exceptions and browser log entries (CSP violations) are collected.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.browser import FLAGS, chromium


class Page:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 1000, timeout: float = 60):
        self.width, self.height, self.timeout = width, height, timeout
        self.console: list[str] = []
        self._id, self._buf, self._events = 0, b"", []

    def __enter__(self) -> Page:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-cdp-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # the child's fd 3 reads our commands, its fd 4 writes the replies
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)  # above 4 first: the pipes may be fds 3 or 4
            r, w = os.dup2(r, 100), os.dup2(w, 101)
            os.dup2(r, 3)  # dup2 leaves the copy inheritable
            os.dup2(w, 4)

        flags = [f for f in FLAGS if f not in ("--enable-logging=stderr", "--v=0")]
        self.proc = subprocess.Popen(
            [chromium(), *flags, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False,
            start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        target = next(t for t in self._call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self._session = self._call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own process group: the browser we started
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._profile.cleanup()

    # --- protocol ---------------------------------------------------------------------------

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise AssertionError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def _note(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.console.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                    for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.console.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded":
            self.console.append(f"log.{p['entry']['level']}: {p['entry']['text']}")
        self._events.append(msg)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._note(reply)

    def send(self, method: str, **params) -> dict:
        return self._call(method, self._session, **params)

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for k, msg in enumerate(self._events):
            if msg.get("method") == event:
                return self._events.pop(k)
        while True:
            msg = self._read(deadline)
            self._note(msg)
            if msg.get("method") == event:
                self._events.remove(msg)
                return msg

    # --- what a test does -------------------------------------------------------------------

    def open(self, path: str | Path) -> None:
        self._events.clear()
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        """The value of ``expression`` in the page (JSON-serialisable values only)."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression!r} threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    def center(self, selector: str) -> tuple[float, float]:
        """Scroll the element into view; its centre in viewport pixels."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                      "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise AssertionError(f"no element matches {selector!r}")
        return box[0], box[1]

    def click(self, selector: str) -> None:
        """A left click with the mouse at the element's centre (press, release)."""
        x, y = self.center(selector)
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click into the element, then type ``text`` as the keyboard would insert it."""
        self.click(selector)
        self.send("Input.insertText", text=text)

    def screenshot(self, png: str | Path, selector: str | None = None) -> None:
        """A PNG of the viewport, or of one element (scrolled into view) at its full size."""
        params: dict = {"format": "png"}
        if selector:
            rect = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                           "e.scrollIntoView({block: 'start'}); const r = e.getBoundingClientRect(); "
                           "return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()")
            params["clip"] = {"x": rect[0], "y": rect[1], "width": rect[2], "height": min(rect[3], 4000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        Path(png).write_bytes(data)

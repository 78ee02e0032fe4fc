"""Headless Chromium for the report's browser check, driven over the DevTools protocol.

Debian's `chromium` package is the browser; `ensure_chromium()` installs it when it is
missing and we are root (the CI path: `.ci/run` runs the tests as root on a fresh
machine), and otherwise says which package to install. The page is opened from a
file:// URL; the only socket is DevTools on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = Path("/usr/bin/chromium")
PACKAGE = "chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1400,1000",
)


def ensure_chromium() -> str | None:
    """Chromium's path, installing Debian's package when absent and root; otherwise
    None and why not (a reason to skip with)."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"headless Chromium is missing: install Debian's '{PACKAGE}' package (apt-get install {PACKAGE})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"apt-get install {PACKAGE} failed: {done.stderr.strip()[-300:]}"
    return None if CHROMIUM.exists() else f"apt-get installed {PACKAGE} but {CHROMIUM} is still missing"


@dataclass
class Page:
    """One tab: send DevTools commands, and keep the console errors and exceptions it logs."""

    ws: websocket.WebSocket
    errors: list[str] = field(default_factory=list)
    _next: int = 0

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url', '')})")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._next:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self._event(msg)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self._event(msg)
            if msg.get("method") == event:
                return
        raise TimeoutError(f"no {event} within {timeout} s")

    def open(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the window."""
        width, height = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self.send("Emulation.setDeviceMetricsOverride", width=max(int(width), 1400), height=min(int(height), 16000),
                  deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Chromium writes the port it chose into DevToolsActivePort."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools was up")
        time.sleep(0.1)
    raise TimeoutError(f"chromium opened no DevTools port within {timeout} s")


@contextmanager
def browser() -> Iterator[Page]:
    """A fresh headless Chromium (own profile folder) and a tab in it."""
    with tempfile.TemporaryDirectory(prefix="kvmconf-chromium-") as profile:
        proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = _devtools_port(Path(profile), proc)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                tabs = json.load(answer)
            url = next(t["webSocketDebuggerUrl"] for t in tabs if t.get("type") == "page")
            ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
            try:
                yield Page(ws)
            finally:
                ws.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

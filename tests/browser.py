"""Headless Chromium over the DevTools protocol, for tests that need a real browser.

Chromium starts with `--remote-debugging-port=0` and prints its websocket address on
stderr; one websocket (websocket-client, a test extra) carries every command and event,
with a flattened session for the page. Every event is kept, so a test can ask afterwards
which requests the page made and what it logged.

Also a script: `python tests/browser.py SITE_INDEX OUT.png [WIDTH HEIGHT]` saves a
screenshot of the top of a page (how leaderboards/*/site-top.png is made).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
)
NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
START_SECONDS = 60


def find_chromium() -> str | None:
    """The browser's path: $KDBENCH_CHROMIUM, else the first of NAMES on PATH."""
    configured = os.environ.get("KDBENCH_CHROMIUM")
    if configured:
        return configured
    return next((path for path in map(shutil.which, NAMES) if path), None)


class Browser:
    """One Chromium process, a fresh profile, one page."""

    def __init__(self, binary: str, width: int = 1400, height: int = 900) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="kdbench-chromium-")
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        try:
            url = self._devtools_url()
            self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
            target = self.command("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.command("Target.attachToTarget", targetId=target,
                                        flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.page(f"{domain}.enable")
            self.page("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_url(self) -> str:
        deadline = time.monotonic() + START_SECONDS
        seen = []
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            seen.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        raise RuntimeError("chromium did not print its DevTools address:\n" + "".join(seen))

    def _call(self, method: str, params: dict[str, Any], session: str | None) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        """A browser-level command."""
        return self._call(method, params, None)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page's session."""
        return self._call(method, params, self.session)

    def wait_for(self, event: str, seconds: float = 30) -> dict[str, Any]:
        """Block until the page fires `event` (or has already fired it since the last
        navigation)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self.events:
                if message["method"] == event and not message.get("_seen"):
                    message["_seen"] = True
                    return message
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.socket.recv())
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"no {event} within {seconds} s")

    def open(self, url: str) -> None:
        self.page("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (a promise is awaited)."""
        result = self.page("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def problems(self) -> list[str]:
        """Console errors and uncaught exceptions the page produced."""
        found = []
        for message in self.events:
            params = message.get("params", {})
            if message["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif message["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(f"console.error: {params.get('args')}")
            elif message["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def requests(self) -> list[str]:
        """Every URL the page asked for."""
        return [m["params"]["request"]["url"] for m in self.events
                if m["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def main(argv: list[str]) -> None:
    index, out = Path(argv[0]).resolve(), Path(argv[1])
    width, height = (int(argv[2]), int(argv[3])) if len(argv) > 3 else (1400, 900)
    binary = find_chromium()
    if binary is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    with Browser(binary, width, height) as browser:
        browser.open(index.as_uri())
        browser.evaluate("Promise.all(Array.from(document.images).map(i => i.decode()"
                         ".catch(() => null)))")
        browser.screenshot(out)
        print(f"wrote {out}; problems: {browser.problems() or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""A page opened in headless Chromium through the DevTools protocol: what a reader's browser
would say about it (console errors, images that did not load, the document's width at a given
viewport, where given elements lie) and a screenshot. Used by tests/test_report_browser.py;
also by hand:

    python tests/browser.py reports/quick/leaderboard.html page.png [width]    (the whole page)
    python tests/browser.py reports/quick/leaderboard.html top.png 1400 900    (the first screen)
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")

# What the page says about itself once loaded: every image (its alt text and whether it decoded),
# the widths that decide whether the page scrolls sideways, and where the elements that the
# caller's CSS selectors (SELECTORS) match lie in the viewport, before any scrolling.
PAGE_FACTS = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0})),
  documentWidth: document.documentElement.scrollWidth,
  viewportWidth: window.innerWidth,
  viewportHeight: window.innerHeight,
  boxes: Object.fromEntries(Object.entries(SELECTORS).map(([name, selector]) => [name,
    Array.from(document.querySelectorAll(selector)).map(element => {
      const box = element.getBoundingClientRect();
      return {text: element.textContent.trim(), attributes: Object.fromEntries(
                Array.from(element.attributes).map(a => [a.name, a.value])),
              left: box.left, top: box.top, right: box.right, bottom: box.bottom};
    })])),
})"""


@dataclass
class PageReport:
    errors: list[str] = field(default_factory=list)          # console errors, exceptions, failed loads
    images: list[dict] = field(default_factory=list)
    document_width: int = 0
    viewport_width: int = 0
    viewport_height: int = 0
    boxes: dict[str, list[dict]] = field(default_factory=dict)   # per selector's name: text, attributes, edges
    screenshot: bytes = field(default=b"", repr=False)

    def in_viewport(self, box: dict) -> bool:
        """Whether the element lies wholly inside the first screen: seen without scrolling."""
        return (0 <= box["left"] and box["right"] <= self.viewport_width
                and 0 <= box["top"] and box["bottom"] <= self.viewport_height)


def chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary, or None."""
    return next((path for path in map(shutil.which, CHROMIUM) if path), None)


def open_page(page: Path, width: int = 1400, height: int = 900, full_page: bool = False,
              timeout: float = 60, selectors: dict[str, str] | None = None) -> PageReport:
    """The page at a `width` × `height` viewport; its screenshot is of the viewport, or of the
    whole page with `full_page`; `selectors`: name -> CSS selector, the elements whose boxes
    the report gives (PageReport.boxes)."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium on PATH (tried {', '.join(CHROMIUM)}); "
                                "install Debian's `chromium` (.ci/run does, as root)")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)             # its helper processes in its group
        try:
            endpoint = _devtools_endpoint(process)
            inspection = _inspect(endpoint, page.resolve().as_uri(), width, height, full_page, selectors or {})
            return asyncio.run(asyncio.wait_for(inspection, timeout))
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _devtools_endpoint(process: subprocess.Popen) -> str:
    """The browser's DevTools address, which it prints on stderr once it listens."""
    for line in process.stderr:
        if match := re.search(r"DevTools listening on (ws://\S+)", line):
            threading.Thread(target=process.stderr.read, daemon=True).start()     # a full pipe would stall it
            return match.group(1)
    raise RuntimeError(f"chromium exited ({process.wait()}) without opening its DevTools port")


async def _inspect(endpoint: str, url: str, width: int, height: int, full_page: bool,
                   selectors: dict[str, str]) -> PageReport:
    import aiohttp
    report = PageReport()
    async with aiohttp.ClientSession() as session, session.ws_connect(endpoint, max_msg_size=0) as socket:
        calls = _Calls(socket, report)
        target = await calls.send("Target.createTarget", url="about:blank")
        attached = await calls.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        calls.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await calls.send(f"{domain}.enable")
        await calls.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                         deviceScaleFactor=1, mobile=False)
        calls.loaded = False                                  # about:blank's own load does not count
        await calls.send("Page.navigate", url=url)
        await calls.until_loaded()
        expression = PAGE_FACTS.replace("SELECTORS", json.dumps(selectors))
        facts = json.loads((await calls.send("Runtime.evaluate", expression=expression))["result"]["value"])
        report.images, report.document_width, report.viewport_width, report.viewport_height, report.boxes = (
            facts["images"], facts["documentWidth"], facts["viewportWidth"], facts["viewportHeight"], facts["boxes"])
        area = {}
        if full_page:
            size = (await calls.send("Page.getLayoutMetrics"))["cssContentSize"]
            area = {"clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                    "captureBeyondViewport": True}
        shot = await calls.send("Page.captureScreenshot", format="png", **area)
        report.screenshot = base64.b64decode(shot["data"])
    return report


class _Calls:
    """DevTools commands over one websocket: each `send` waits for its answer; the events on the
    way are read for errors and for the page's load."""

    def __init__(self, socket, report: PageReport):
        self.socket, self.report, self.session, self.next_id = socket, report, None, 0
        self.loaded = False

    async def send(self, method: str, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        await self.socket.send_json(message)
        while True:
            reply = await self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})

    async def until_loaded(self) -> None:
        while not self.loaded:
            await self._receive()

    async def _receive(self) -> dict:
        message = json.loads((await self.socket.receive()).data)
        self._event(message.get("method", ""), message.get("params", {}))
        return message

    def _event(self, method: str, params: dict) -> None:
        errors = self.report.errors
        if method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")


if __name__ == "__main__":
    first_screen = len(sys.argv) > 4
    result = open_page(Path(sys.argv[1]), width=int(sys.argv[3]) if len(sys.argv) > 3 else 1400,
                       height=int(sys.argv[4]) if first_screen else 900, full_page=not first_screen)
    Path(sys.argv[2]).write_bytes(result.screenshot)
    print(f"errors: {result.errors}\nimages: {len(result.images)}, "
          f"not loaded: {[i['alt'] for i in result.images if not i['loaded']]}\n"
          f"document {result.document_width} px wide at a {result.viewport_width} px viewport")

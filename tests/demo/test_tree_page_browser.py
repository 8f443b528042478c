"""The demo's tree page in a real browser: headless Chromium, driven over the Chrome DevTools Protocol.

Why CDP and not Selenium or Playwright: Playwright downloads its own browser (impossible offline), and
Selenium would add a Python dependency and a chromedriver that must match the browser's version. CDP is
the browser's own protocol: Debian's ``chromium`` is all this test needs, spoken through the standard
library (HTTP for the target list, a minimal WebSocket client below), and it reports an uncaught script
error as an event (``Runtime.exceptionThrown``) instead of a log line to parse.

Skipped, with the reason, only where no Chromium is installed (``apt-get install chromium`` as root).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.loop import run_demo
from tempo_verl.demo.model import ModelSize
from tempo_verl.demo.report import write_outputs
from tempo_verl.trees.readers import load_tree_input

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine: install it with `apt-get install chromium` (as root)"
)

#: Headless, offline and isolated: no GPU, no QUIC, no first-run, no background or component traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1400,900",
)


class DevTools:
    """One page target over the Chrome DevTools Protocol: a minimal WebSocket client (RFC 6455, text frames)."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        host_port, _, path = ws_url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _receive(self) -> dict[str, Any]:
        """The next message: frames joined until FIN (server frames are never masked)."""
        payload = b""
        while True:
            b0, b1 = self._read(2)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8))[0]
            payload += self._read(size)
            if b0 & 0x80:
                return json.loads(payload)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept in ``events``."""
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        size = len(data)
        head = bytes([0x81]) + (
            bytes([0x80 | size])
            if size < 126
            else bytes([0x80 | 126]) + struct.pack(">H", size)
            if size < 65536
            else bytes([0x80 | 127]) + struct.pack(">Q", size)
        )
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.events:
                if message.get("method") == event:
                    return message
            self.events.append(self._receive())
        raise TimeoutError(event)

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a thrown error fails the test)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Uncaught script errors and console errors reported so far."""
        found = []
        for m in self.events:
            if m.get("method") == "Runtime.exceptionThrown":
                details = m["params"]["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details.get("text", "?"))
            elif m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] == "error":
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in m["params"]["args"]))
        return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A fresh headless Chromium (its own --user-data-dir) and a DevTools connection to its page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [BROWSER, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, f"chromium exited with status {proc.returncode}"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.loads(no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Runtime.enable")
        tools.call("Page.enable")
        yield tools
        tools.sock.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _open(tools: DevTools, url: str) -> None:
    tools.events.clear()
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired")


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    """The outputs of a short demo run (two estimators, one seed, tiny model)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo")
    tiny = ModelSize(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    cfg = DemoConfig(
        out=out, seeds=1, steps=3, prompts_per_step=8, group_size=6, warmup_steps=120, warmup_batch=32, model=tiny
    )
    write_outputs(run_demo(cfg), out)
    return out


def test_the_error_check_sees_a_script_error(browser) -> None:
    """The check below can fail: a page whose script throws is reported."""
    _open(browser, "data:text/html,<p>x</p><script>null.f()</script>")
    assert any("TypeError" in e for e in browser.errors())


def test_demo_tree_page_renders_every_group_and_shows_an_edge_text_on_hover(browser, demo_page) -> None:
    records = load_tree_input(demo_page / "trees")
    html = (demo_page / "tree.html").read_text()
    _open(browser, (demo_page / "tree.html").resolve().as_uri())
    assert browser.errors() == []

    # Every group is drawn, with all its responses as leaves, at a visible size.
    drawn = browser.js(
        """[...document.querySelectorAll('section.group')].map(s => {
             const box = s.querySelector('svg.tree').getBoundingClientRect();
             const rows = [...s.querySelectorAll('g.node[data-leaf="1"]')]
               .flatMap(g => g.dataset.rows.split(' ').map(Number));
             return {uid: s.dataset.uid, width: box.width, height: box.height,
                     edges: s.querySelectorAll('g.edge').length, rows: rows.sort((a, b) => a - b)};
           })"""
    )
    assert [g["uid"] for g in drawn] == [str(r["uid"]) for r in records]
    for group, record in zip(drawn, records, strict=True):
        assert group["width"] > 100 and group["height"] > 50, group
        assert group["edges"] >= 1
        assert group["rows"] == list(range(len(record["responses"])))

    # Hovering an edge shows its full text: the <title> the page was written with, in the tooltip.
    edge = browser.js(
        """(() => {
             const g = document.querySelector('section.group g.edge[data-end-marker="0"]');
             g.scrollIntoView({block: 'center'});
             const path = g.querySelector('path.hit'), at = path.getPointAtLength(path.getTotalLength() * 0.75);
             const p = new DOMPoint(at.x, at.y).matrixTransform(path.getScreenCTM());
             return {x: p.x, y: p.y, start: g.dataset.start, end: g.dataset.end, rep: g.dataset.rep,
                     label: g.querySelector('text.label').textContent};
           })()"""
    )
    marker = f'<g class="edge" data-start="{edge["start"]}" data-end="{edge["end"]}" data-rep="{edge["rep"]}" '
    written = html.split(marker, 1)[1].split("<title>", 1)[1].split("</title>", 1)[0]
    full = written.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&#x27;", "'")
    full = full.replace("&amp;", "&")
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=edge["x"], y=edge["y"])
    tip = browser.js(
        """(() => { const t = document.getElementById('tip'), r = t.getBoundingClientRect();
                    return {shown: getComputedStyle(t).display, text: t.textContent, w: r.width, h: r.height}; })()"""
    )
    assert tip["shown"] == "block" and tip["w"] > 0 and tip["h"] > 0
    assert tip["text"] == full
    for word in edge["label"].replace("…", " ").split():
        assert word in tip["text"]  # the edge's label is part of the full text

    # A click pins the text: it stays while the mouse moves away, Escape closes it.
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=edge["x"], y=edge["y"], button="left", clickCount=1)
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=2, y=2)
    assert browser.js("document.getElementById('tip').classList.contains('pinned')")
    assert browser.js("getComputedStyle(document.getElementById('tip')).display") == "block"
    browser.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
    assert browser.js("getComputedStyle(document.getElementById('tip')).display") == "none"
    assert browser.errors() == []

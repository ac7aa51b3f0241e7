#!/usr/bin/env python3
"""Measures the status page's layout in headless Chromium at one width.

usage: scripts/page-layout.py BROWSER URL WIDTH MAX_COLUMNS

Loads URL with the viewport WIDTH px wide and reports how many columns the
page's sections are laid out in and which table cells break over more than
one line. Exits 1 when there are more than MAX_COLUMNS columns or a cell
breaks (a timestamp split over two lines is the usual sign of a squeezed
page), 0 otherwise.

The page runs no script and its content security policy forbids any, so the
measurement goes through the DevTools protocol (on a pipe: no port is
opened), whose evaluations the policy does not cover.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

MEASURE = """
(() => {
  const lefts = new Set();
  for (const s of document.querySelectorAll('main > section')) {
    lefts.add(Math.round(s.getBoundingClientRect().left));
  }
  const broken = [];
  for (const td of document.querySelectorAll('td')) {
    // The lines of the cell's text: its text boxes' tops, a few pixels
    // apart at most on one line (an element's padding shifts its box).
    const tops = [];
    const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) {
        if (r.width > 0) tops.push(r.top);
      }
    }
    const lines = tops.filter(t => t > Math.min(...tops) + 6).length;
    if (lines > 0) broken.push(td.textContent.trim());
  }
  return JSON.stringify({
    sections: document.querySelectorAll('main > section').length,
    columns: lefts.size,
    broken: broken,
    overflow: document.documentElement.scrollWidth > window.innerWidth,
  });
})()
"""


class Browser:
    """One headless Chromium driven over --remote-debugging-pipe."""

    def __init__(self, binary, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def fds():
            # Through fresh descriptors: a pipe may already be 3 or 4, and
            # dup2 onto itself would leave it close-on-exec.
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=" + profile,
             "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_browser, 65536)
                if not chunk:
                    raise RuntimeError("the browser closed its pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def close(self):
        self.process.kill()
        self.process.wait()


def main():
    if len(sys.argv) != 5:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    binary, url, width, max_columns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(binary, profile)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.call("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]
            browser.call("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": 900, "deviceScaleFactor": 1,
                          "mobile": False}, session)
            browser.call("Page.navigate", {"url": url}, session)
            for _ in range(100):
                state = browser.call("Runtime.evaluate",
                                     {"expression": "document.readyState"}, session)
                if state["result"].get("value") == "complete":
                    break
                time.sleep(0.1)
            found = browser.call("Runtime.evaluate",
                                 {"expression": MEASURE, "returnByValue": True}, session)
            layout = json.loads(found["result"]["value"])
        finally:
            browser.close()
    verdict = []
    if layout["sections"] == 0:
        verdict.append("no section found")
    if layout["columns"] > max_columns:
        verdict.append(f"{layout['columns']} columns, more than {max_columns}")
    if layout["broken"]:
        verdict.append(f"cells broken over lines: {layout['broken']}")
    if layout["overflow"]:
        verdict.append("wider than the window")
    print(f"{width} px: {layout['sections']} sections in {layout['columns']} columns"
          + (f"; {'; '.join(verdict)}" if verdict else "; no cell breaks"))
    sys.exit(1 if verdict else 0)


if __name__ == "__main__":
    main()

"""Opens a page in headless Chromium (Debian's `chromium`) and reports what it rendered."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The probe page reads the report's DOM through a file:// iframe.
    "--allow-file-access-from-files",
    "--virtual-time-budget=15000",
    "--dump-dom",
)

PROBE = """<!DOCTYPE html><html><body>
<iframe id="page" src="{src}" style="width:1200px;height:800px"></iframe>
<script>
window.addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const images = Array.from(doc.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify({{images: images.length, broken: broken,
                                     text: doc.body.innerText}});
  document.body.appendChild(out);
}});
</script></body></html>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(page_path: str, work_dir: str) -> dict:
    """{'images': count, 'broken': [src, ...], 'text': visible text} of the page."""
    probe = os.path.join(work_dir, "probe.html")
    with open(probe, "w") as f:
        f.write(PROBE.format(src="file://" + os.path.abspath(page_path)))
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={work_dir}/profile", "file://" + probe],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    if not match:
        raise AssertionError(f"the probe did not report; chromium said: {result.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))

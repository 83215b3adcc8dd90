"""Render a report in a real headless browser (Debian's ``chromium``): a screenshot, and an image check.

``screenshot`` returns a `BrowserResult`, truthy on success, whose ``reason`` says why not (no
browser, crash, timeout), so callers and tests can report it instead of failing silently.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@dataclass
class BrowserResult:
    ok: bool
    reason: str = ""
    output: str = ""

    def __bool__(self) -> bool:
        return self.ok


def find_browser() -> str | None:
    """The browser executable: ``$MGT_BENCH_BROWSER`` if set, else the first Chromium on PATH."""
    env = os.environ.get("MGT_BENCH_BROWSER")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> BrowserResult:
    browser = find_browser()
    if browser is None:
        return BrowserResult(False, "no Chromium on PATH (install Debian's `chromium` or set MGT_BENCH_BROWSER)")
    with tempfile.TemporaryDirectory(prefix="mgt-bench-chromium-") as profile:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start;
        # a throw-away profile avoids lock files from other Chromium processes.
        cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return BrowserResult(False, f"{browser} timed out after {timeout:.0f} s")
        except OSError as exc:
            return BrowserResult(False, f"{browser} could not start: {exc}")
    if proc.returncode != 0:
        return BrowserResult(False, f"{browser} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}", proc.stdout)
    return BrowserResult(True, "", proc.stdout)


def screenshot(html_path: Path | str, png_path: Path | str, width: int = 1400, height: int = 4000,
               timeout: float = 120.0) -> BrowserResult:
    """Save a PNG screenshot of ``html_path`` as rendered by headless Chromium."""
    html_path, png_path = Path(html_path).resolve(), Path(png_path).absolute()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    # the browser writes into a scratch folder, then the file is renamed into place: a link planted at
    # png_path is replaced, never written through
    with tempfile.TemporaryDirectory(dir=png_path.parent, prefix=".screenshot-") as scratch:
        shot = Path(scratch) / "shot.png"
        res = _run([f"--screenshot={shot}", f"--window-size={width},{height}", "--virtual-time-budget=10000",
                    html_path.as_uri()], timeout)
        if res and not shot.exists():
            return BrowserResult(False, "the browser exited cleanly but wrote no screenshot", res.output)
        if res:
            os.replace(shot, png_path)
    return res


_CHECK = ("<script>window.addEventListener('load',function(){var im=document.images,bad=0;"
          "for(var i=0;i<im.length;i++){if(!(im[i].complete&&im[i].naturalWidth>0))bad++;}"
          "document.body.setAttribute('data-images',im.length);document.body.setAttribute('data-broken',bad);});</script>")


def image_load_check(html_path: Path | str, timeout: float = 120.0) -> tuple[int, int] | BrowserResult:
    """``(images, broken)`` as counted by the browser after the page's load event.

    The report itself has no script; a temporary copy gets a five-line probe that records, for every
    ``<img>``, whether the browser decoded it (``complete`` and ``naturalWidth > 0``), and Chromium's
    ``--dump-dom`` returns the result. Returns a falsy `BrowserResult` if the browser cannot run.
    """
    html_path = Path(html_path).resolve()
    text = html_path.read_text(encoding="utf-8")
    probe = text.replace("</body>", _CHECK + "</body>") if "</body>" in text else text + _CHECK
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=html_path.parent, delete=False, encoding="utf-8") as fh:
        fh.write(probe)
        tmp = Path(fh.name)
    try:
        res = _run(["--dump-dom", "--virtual-time-budget=10000", tmp.as_uri()], timeout)
    finally:
        tmp.unlink(missing_ok=True)
    if not res:
        return res
    m_img = re.search(r'data-images="(\d+)"', res.output)
    m_bad = re.search(r'data-broken="(\d+)"', res.output)
    if not (m_img and m_bad):
        return BrowserResult(False, "the probe did not run (no load event within the time budget)", res.output[-500:])
    return int(m_img.group(1)), int(m_bad.group(1))

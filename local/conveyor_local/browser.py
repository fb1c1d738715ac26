"""The browser `make test-ui` drives: Debian's Chromium, headless, through Playwright.

    python -m conveyor_local.browser          # find Chromium, installing Debian's package if missing

Playwright's own browser downloads are never used (they come from a CDN this project's machines
cannot reach); Playwright launches the system Chromium instead. CONVEYOR_CHROMIUM names another
executable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conveyor_local import debian

# Headless Chromium as root, on a machine whose only network is loopback: no sandbox (root), no
# GPU, and none of the background connections (updates, sync, safe browsing) that would be refused.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class NoBrowser(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The Chromium executable: CONVEYOR_CHROMIUM, else the first on PATH."""
    named = os.environ.get("CONVEYOR_CHROMIUM")
    if named:
        return named if shutil.which(named) else None
    return next((path for name in _CANDIDATES if (path := shutil.which(name))), None)


def ensure_chromium() -> str:
    """Find Chromium, or install Debian's `chromium` package (as root, or with password-less
    sudo). Raises NoBrowser saying why when neither works."""
    if path := find_chromium():
        return path
    if os.environ.get("CONVEYOR_CHROMIUM"):
        raise NoBrowser(f"CONVEYOR_CHROMIUM={os.environ['CONVEYOR_CHROMIUM']} is not an executable")
    try:
        return debian.install("chromium", find_chromium, "the browser tests")
    except debian.NotInstalled as exc:
        raise NoBrowser(f"{exc} (or set CONVEYOR_CHROMIUM)") from None


def launch(playwright):
    """A headless Chromium browser from a Playwright instance (`sync_playwright()`)."""
    path = find_chromium()
    if not path:
        raise NoBrowser("no Chromium: run `python -m conveyor_local.browser` (make test-ui does)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=list(CHROMIUM_ARGS))


def main() -> int:
    try:
        path = ensure_chromium()
    except NoBrowser as exc:
        print(f"no browser for the UI tests: {exc}", file=sys.stderr)
        return 1
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"browser: {path} ({version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

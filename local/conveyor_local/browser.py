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


def _apt_get(*args: str) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run(
        [*prefix, "apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
    )


def ensure_chromium() -> str:
    """Find Chromium, or install Debian's `chromium` package (as root, or with password-less
    sudo). Raises NoBrowser saying why when neither works."""
    if path := find_chromium():
        return path
    if os.environ.get("CONVEYOR_CHROMIUM"):
        raise NoBrowser(f"CONVEYOR_CHROMIUM={os.environ['CONVEYOR_CHROMIUM']} is not an executable")
    if not shutil.which("apt-get"):
        raise NoBrowser("no Chromium on PATH and no apt-get to install it (set CONVEYOR_CHROMIUM)")
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise NoBrowser("no Chromium on PATH; installing Debian's chromium needs root or sudo")
    print("installing Debian's chromium for the browser tests (apt-get) ...", file=sys.stderr)
    installed = _apt_get("install", "-y", "-q", "chromium")
    if installed.returncode:  # stale package lists on a fresh machine
        _apt_get("update", "-q")
        installed = _apt_get("install", "-y", "-q", "chromium")
    if installed.returncode or not (path := find_chromium()):
        raise NoBrowser(f"apt-get install chromium failed: {(installed.stderr or installed.stdout)[-800:]}")
    return path


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

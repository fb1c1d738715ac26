"""Debian packages the local tooling installs when they are missing (Chromium for the UI tests,
redis-server for the Celery broker): as root, or with password-less sudo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable


class NotInstalled(RuntimeError):
    """The package is missing and could not be installed; the message says why."""


def apt_get(*args: str) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run(
        [*prefix, "apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
    )


def install(package: str, find: Callable[[], str | None], purpose: str) -> str:
    """Install Debian's `package` (for `purpose`, said on stderr), then return `find()`'s path."""
    if not shutil.which("apt-get"):
        raise NotInstalled(f"no {package} here and no apt-get to install it")
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise NotInstalled(f"no {package} here; installing Debian's {package} needs root or sudo")
    print(f"installing Debian's {package} for {purpose} (apt-get) ...", file=sys.stderr)
    installed = apt_get("install", "-y", "-q", package)
    if installed.returncode:  # stale package lists on a fresh machine
        apt_get("update", "-q")
        installed = apt_get("install", "-y", "-q", package)
    if installed.returncode or not (path := find()):
        raise NotInstalled(
            f"apt-get install {package} failed: {(installed.stderr or installed.stdout)[-800:]}"
        )
    return path

"""Write (or check) the project's lock file, `.ci/constraints.txt`.

The lock pins every package of the local virtualenv. Packages that MWAA 3.3.1's image ships are
pinned to MWAA's versions (Airflow's constraints file for 3.3.1 / Python 3.12), so local runs
behave like MWAA; the local-only tools (moto, fakesnow, pytest, ...) get the newest versions that
agree with those pins.

    python .ci/lock.py            # resolve and write the lock (needs the constraints file)
    python .ci/lock.py --check    # fail when pyproject.toml / requirements.txt changed since

The constraints source is the URL on requirements.txt's `--constraint` line, or a local copy
named by MWAA_CONSTRAINTS=/path/to/constraints-3.12.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / ".ci" / "constraints.txt"
# checkov pins its own boto3/networkx, which clash with Airflow's: it gets a virtualenv of its own
# (`.venv-tools`), locked here from pyproject's `tools` group.
TOOLS_LOCK = ROOT / ".ci" / "tools-constraints.txt"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-unknown-linux-gnu"

# MWAA pins that cannot install on the local Python 3.11; the resolver picks the newest version
# compatible with the rest instead. Everything else is MWAA's exact version.
NOT_ON_PY311 = {
    "numpy": "numpy 2.5.x requires Python >= 3.12 (MWAA runs 3.12)",
}


def inputs() -> tuple[list[str], list[str], str]:
    """The requirement lines of both locks (project + dev, tools), and their digest."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = pyproject["dependency-groups"]
    reqs = list(pyproject["project"]["dependencies"]) + list(groups["dev"])
    tools = list(groups["tools"])
    mwaa_file = (ROOT / "requirements.txt").read_text()
    digest = hashlib.sha256("\n".join([*reqs, mwaa_file, *tools]).encode()).hexdigest()
    return reqs, tools, digest


def compile_pins(reqs: list[str], constraints: list[str] | None = None) -> str:
    """`uv pip compile` the requirement lines (under optional constraint lines); the pinned lines."""
    with tempfile.TemporaryDirectory() as tmp:
        req_file = Path(tmp, "requirements.in")
        req_file.write_text("\n".join(reqs) + "\n")
        args = ["uv", "pip", "compile", "--quiet", "--no-header", "--no-annotate"]
        args += ["--python-version", PYTHON_VERSION, "--python-platform", PLATFORM]
        if constraints is not None:
            con_file = Path(tmp, "mwaa-constraints.txt")
            con_file.write_text("\n".join(constraints) + "\n")
            args += ["--constraint", str(con_file)]
        out = Path(tmp, "lock.txt")
        subprocess.run([*args, "-o", str(out), str(req_file)], check=True)
        return out.read_text()


def constraints_source() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("--constraint"):
            default = line.split(None, 1)[1].strip().strip('"')
            break
    else:
        sys.exit("requirements.txt has no --constraint line")
    return os.environ.get("MWAA_CONSTRAINTS", default)


def read_constraints(source: str) -> str:
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=60) as response:
            return response.read().decode()
    return Path(source).read_text()


def write_lock() -> None:
    reqs, tools, digest = inputs()
    source = constraints_source()
    kept = [
        line
        for line in read_constraints(source).splitlines()
        if line.split("==")[0].strip().lower() not in NOT_ON_PY311
    ]
    pins = compile_pins(reqs, kept)
    header = [
        "# Local lock for Conveyor. Written by `make lock` (.ci/lock.py); do not edit by hand.",
        f"# inputs-sha256: {digest}",
        f"# resolved for Python {PYTHON_VERSION} against MWAA 3.3.1's constraints ({Path(source).name}).",
        *(f"# not MWAA's pin: {name}: {why}" for name, why in NOT_ON_PY311.items()),
    ]
    LOCK.write_text("\n".join(header) + "\n" + pins)
    print(f"wrote {LOCK.relative_to(ROOT)} ({pins.count('==')} pins)")
    tool_pins = compile_pins(tools)
    TOOLS_LOCK.write_text(
        "# Lock for .venv-tools (checkov). Written by `make lock` (.ci/lock.py); do not edit by hand.\n"
        f"# inputs-sha256: {digest}\n" + tool_pins
    )
    print(f"wrote {TOOLS_LOCK.relative_to(ROOT)} ({tool_pins.count('==')} pins)")


def check_lock() -> int:
    *_, digest = inputs()
    for lock in (LOCK, TOOLS_LOCK):
        if not lock.exists():
            print(f"{lock.relative_to(ROOT)} is missing: run `make lock`", file=sys.stderr)
            return 1
        if f"# inputs-sha256: {digest}" not in lock.read_text():
            print(
                f"{lock.relative_to(ROOT)} is out of date with pyproject.toml/requirements.txt: run `make lock`",
                file=sys.stderr,
            )
            return 1
        print(f"{lock.relative_to(ROOT)} is in sync")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the lock is in sync")
    args = parser.parse_args()
    if args.check:
        return check_lock()
    write_lock()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The files that must agree with each other do: requirements.txt, pyproject, the lock (compose:
test_compose.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


REQUIREMENTS = (ROOT / "requirements.txt").read_text().splitlines()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = _pins((ROOT / ".ci" / "constraints.txt").read_text().splitlines())


def test_requirements_txt_is_what_mwaa_needs():
    assert (
        REQUIREMENTS.count(
            '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"'
        )
        == 1
    )
    mwaa_extra = _pins(REQUIREMENTS)
    # What MWAA 3.3.1's image lacks and the DAGs import.
    assert set(mwaa_extra) == {"apache-airflow-providers-snowflake", "pandas", "pyarrow", "pycountry"}
    runtime = _pins(PYPROJECT["project"]["dependencies"])
    for name, version in mwaa_extra.items():
        assert runtime[name] == version, f"pyproject pins {name}=={runtime[name]}, requirements.txt {version}"


def test_lock_pins_the_runtime_versions_and_is_in_sync():
    for name, version in _pins(PYPROJECT["project"]["dependencies"]).items():
        assert LOCK.get(name) == version, f"lock has {name}=={LOCK.get(name)}, pyproject wants {version}"
    for requirement in PYPROJECT["dependency-groups"]["dev"]:
        name = re.split(r"[\[=<>]", requirement)[0].lower()
        assert name in LOCK, f"dev tool {name} is not in the lock"
    check = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "lock.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def _relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_and_image_in_the_docs_exists():
    docs = [ROOT / "README.md", ROOT / "terraform" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    missing = [
        f"{doc.relative_to(ROOT)}: {target}"
        for doc in docs
        for target in _relative_links(doc.read_text())
        if not (doc.parent / target).exists()
    ]
    assert missing == []
    local_links = _relative_links((ROOT / "docs" / "local.md").read_text())
    assert "screenshots/grid-triggered-run.png" in local_links
    assert "screenshots/backfill-finished.png" in local_links


def test_the_link_check_can_fail():
    assert _relative_links("see [x](docs/nope.md#a), ![s](a.png) and [w](https://x.org)") == [
        "docs/nope.md",
        "a.png",
    ]

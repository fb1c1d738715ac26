"""`python -m conveyor_local.package`: build the three artefacts MWAA reads, in `dist/`.

    dist/dags/              the DAG files, `include/` (SQL, configs) and an .airflowignore
    dist/plugins.zip        the `plugins/` folder as it is: the `conveyor` library and .airflowignore
    dist/requirements.txt   the project's requirements.txt, unchanged

MWAA syncs `dags/` to `$AIRFLOW_HOME/dags`, unzips `plugins.zip` into `$AIRFLOW_HOME/plugins`
(on `sys.path`) and installs `requirements.txt`. Terraform uploads all three from `dist/` and
wires the object versions of `plugins.zip` and `requirements.txt` into the environment.

The zip is byte-for-byte reproducible (sorted entries, fixed timestamps and modes): a build with
no code change gives the same checksum, so Terraform uploads no new version and MWAA does not
restart its workers for nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The DAG processor must not scan include/ (SQL and JSON) for DAGs.
DAGS_AIRFLOWIGNORE = "# include/ holds SQL and configs for the DAGs, not DAG files.\ninclude/\n"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def _skipped(relative: str) -> bool:
    """Caches only: `plugins/` holds exactly what MWAA runs (local tooling lives in `local/`)."""
    return "__pycache__" in relative.split("/") or relative.endswith((".pyc", ".pyo"))


def _files(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not _skipped(relative):
            found.append((relative, path))
    return found


def build_plugins_zip(plugins: Path, target: Path) -> list[str]:
    """Zip `plugins/` reproducibly; returns the entry names."""
    names = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for relative, path in _files(plugins):
            info = zipfile.ZipInfo(relative, date_time=ZIP_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
            names.append(relative)
    return names


def build(root: Path = ROOT, out: Path | None = None) -> dict:
    """Build dist/ from the checkout at `root`; returns what was written, with sizes and sha256."""
    out = out or root / "dist"
    if out.exists():
        shutil.rmtree(out)
    dags_out = out / "dags"
    dags_out.mkdir(parents=True)

    dag_files = sorted((root / "dags").glob("*.py"))
    if not dag_files:
        raise FileNotFoundError(f"no DAG files in {root / 'dags'}")
    for path in dag_files:
        shutil.copy2(path, dags_out / path.name)
    shutil.copytree(root / "include", dags_out / "include", ignore=shutil.ignore_patterns("__pycache__"))
    (dags_out / ".airflowignore").write_text(DAGS_AIRFLOWIGNORE)

    entries = build_plugins_zip(root / "plugins", out / "plugins.zip")
    if "conveyor/__init__.py" not in entries:
        raise RuntimeError("plugins.zip has no conveyor/__init__.py: is plugins/conveyor/ missing?")
    shutil.copy2(root / "requirements.txt", out / "requirements.txt")

    def describe(path: Path) -> dict:
        data = path.read_bytes()
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        return {"path": str(shown), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    return {
        "dags": [p.name for p in dag_files],
        "include_files": sum(1 for p in (dags_out / "include").rglob("*") if p.is_file()),
        "plugins_zip": {**describe(out / "plugins.zip"), "entries": len(entries)},
        "requirements": describe(out / "requirements.txt"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_local.package", description=__doc__)
    parser.add_argument("--out", type=Path, help="output folder (default: dist/ in the checkout)")
    args = parser.parse_args(argv)
    built = build(out=args.out)
    print(
        f"DAG files ({len(built['dags'])}): {', '.join(built['dags'])} + include/ ({built['include_files']} files)"
    )
    z = built["plugins_zip"]
    print(f"{z['path']}: {z['entries']} files, {z['bytes']:,} bytes, sha256 {z['sha256'][:16]}…")
    r = built["requirements"]
    print(f"{r['path']}: {r['bytes']:,} bytes, sha256 {r['sha256'][:16]}…")
    print("Next: terraform -chdir=terraform apply -var-file=environments/<env>.tfvars (uploads these)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One import root: the top-level folders install as govgym.<folder>, nothing generic lands in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "govgym": "govgym",
    "govgym.efficiency": "efficiency",
    "govgym.envs": "envs",
    "govgym.agents": "agents",
    "govgym.configs": "configs",
    "govgym.deploy": "deploy",
}


def _setuptools_table() -> dict:
    # setuptools' own reader (its vendored TOML parser): works on Python 3.10, which has no tomllib
    from setuptools.config.pyprojecttoml import read_configuration

    return read_configuration(ROOT / "pyproject.toml", expand=False)["tool"]["setuptools"]


def test_package_list_matches_folders():
    """Every folder with an __init__.py under a mapped folder is listed in `packages`, and nothing else is."""
    tool = _setuptools_table()
    assert tool["package-dir"] == FOLDERS
    found = set()
    for pkg, folder in FOLDERS.items():
        assert (ROOT / folder / "__init__.py").is_file(), (
            f"{folder}/ needs an __init__.py to install as {pkg}"
        )
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if not any(part.startswith((".", "__pycache__")) for part in rel.parts):
                found.add(".".join([pkg, *rel.parts]))
    assert (
        "govgym.cli" in found
    )  # the CLI is its own subpackage (nothing below imports it: tests/test_layers.py)
    assert sorted(tool["packages"]) == sorted(found), "subpackages must be listed in pyproject packages"


def test_imports_resolve_to_the_folders():
    import govgym.configs
    import govgym.efficiency

    assert Path(govgym.efficiency.__file__).parent == ROOT / "efficiency"
    from importlib.resources import files

    assert (files("govgym.configs") / "default.yaml").is_file()


def test_wheel_has_one_import_root(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("govgym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"govgym"}, tops
    for mod in (
        "govgym/efficiency/run.py",
        "govgym/configs/default.yaml",
        "govgym/py.typed",
        "govgym/cli/__init__.py",
        "govgym/cli/__main__.py",
        "govgym/__main__.py",  # python -m govgym
    ):
        assert mod in names
    from govgym.deploy.shipped import NAMES

    for name in NAMES:  # GovernorCallback("default") etc. work from an installed wheel (deploy/shipped.py)
        assert f"govgym/configs/governors/{name}/governor.json" in names, name

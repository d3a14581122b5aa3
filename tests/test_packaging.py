"""One import root: the top-level folders install as govgym.<folder>, nothing generic lands in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

# setuptools reads pyproject.toml on Python 3.10 as well (tomllib is 3.11+; govgym declares >=3.10)
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"govgym": "govgym", "govgym.efficiency": "efficiency", "govgym.envs": "envs", "govgym.agents": "agents", "govgym.configs": "configs"}


def test_package_list_matches_folders():
    tool = read_configuration(ROOT / "pyproject.toml", expand=False)["tool"]["setuptools"]
    assert tool["package-dir"] == FOLDERS
    assert sorted(tool["packages"]) == sorted(FOLDERS)
    for pkg, folder in FOLDERS.items():
        assert (ROOT / folder / "__init__.py").is_file(), f"{folder}/ needs an __init__.py to install as {pkg}"
        subdirs = [p for p in (ROOT / folder).iterdir() if p.is_dir() and (p / "__init__.py").exists()]
        assert not subdirs, f"subpackages {subdirs} must be listed in pyproject packages"


def test_imports_resolve_to_the_folders():
    import govgym.configs
    import govgym.efficiency

    assert Path(govgym.efficiency.__file__).parent == ROOT / "efficiency"
    from importlib.resources import files

    assert (files("govgym.configs") / "default.yaml").is_file()


def test_wheel_has_one_import_root(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("govgym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"govgym"}, tops
    for mod in ("govgym/efficiency/run.py", "govgym/configs/default.yaml", "govgym/py.typed", "govgym/cli.py"):
        assert mod in names

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
    shipped = sorted(d.name for d in (ROOT / "configs" / "governors").iterdir() if d.is_dir())
    assert {"default", "marginal_gain", "patience", "memory_reactive", "zeus"} <= set(shipped)
    for name in shipped:  # GovernorCallback("default") etc. work from an installed wheel (deploy/shipped.py)
        assert f"govgym/configs/governors/{name}/governor.json" in names, name


TESTED = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "bitsandbytes",
    "tokenizers",
    "safetensors",
    "gymnasium",
    "numpy",
)
"""The core stack whose floor is the version the suite runs on (issue 19 item 6): major.minor equal."""


def _floors() -> dict[str, tuple[int, ...]]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: setuptools' vendored parser
        from setuptools._vendor import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]  # dev (build tools) is the developer's machine, not a user's
    reqs = list(project["dependencies"]) + [r for k, rs in extras.items() if k != "dev" for r in rs]
    out = {}
    for r in reqs:
        name, _, rest = r.partition(">=")
        if rest:
            out[name.strip().lower()] = tuple(int(x) for x in rest.split(",")[0].strip().split("."))
    return out


def _installed(name: str) -> tuple[int, ...]:
    import importlib.metadata as md
    import re

    return tuple(int(x) for x in re.findall(r"\d+", md.version(name))[:3])


def test_floors_are_the_tested_versions():
    floors = _floors()
    for name in TESTED:
        assert floors[name][:2] == _installed(name)[:2], (
            f"{name}: floor {floors[name]} vs tested {_installed(name)}"
        )
    import importlib.metadata as md

    for name, floor in floors.items():  # every other floor is at or below what runs here
        try:
            have = _installed(name)
        except md.PackageNotFoundError:
            continue  # an optional extra not installed here (ray)
        assert have >= floor, f"{name}: installed {have} is below the floor {floor}"


def test_governed_trainer_refuses_a_trainer_without_the_grad_norm_hooks():
    """transformers versions whose loop has no _clip_grad_norm/_get_grad_norm: refused, never a silent 0."""
    import pytest
    from transformers import Trainer

    from govgym.deploy.trainer import GovernedTrainer, check_grad_hooks, missing_grad_hooks
    from govgym.errors import ConfigError

    assert missing_grad_hooks(Trainer) == [] and missing_grad_hooks(GovernedTrainer) == []
    old = type("OldTrainer", (), {})  # a Trainer of before the hooks: neither method
    assert missing_grad_hooks(old) == ["_clip_grad_norm", "_get_grad_norm"]
    with pytest.raises(ConfigError, match="silently read 0"):
        check_grad_hooks(old)


def test_license_and_python_m_govgym():
    text = (ROOT / "LICENSE").read_text()
    assert text.strip().startswith("Apache License") and "END OF TERMS AND CONDITIONS" in text
    r = subprocess.run([sys.executable, "-m", "govgym", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "usage: govgym" in r.stdout, r.stderr[-2000:]

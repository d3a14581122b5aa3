"""Every import arrow points one way: base -> efficiency -> envs -> agents -> deploy -> cli.

The layers (docs/ARCHITECTURE.md, "Layers"), lowest first:

    base        govgym/typed.py, errors.py, results.py, plots.py and configs/ (YAML): shared helpers
    efficiency  the real fine-tuning run and its levers (efficiency/)
    envs        Gymnasium environments over it (envs/)
    agents      governors and how they are judged (agents/)
    deploy      exported governors and the Trainer integration (deploy/); it must not load SB3 or
                gymnasium, so of the layers below it imports only efficiency and agents' numpy-only
                modules (heuristics, specs, curvefit, shield)
    cli         the ``govgym`` command and its jobs (govgym/cli/)

A module may import its own layer and the layers below it, never one above. Every import counts:
module top, function bodies, ``if TYPE_CHECKING`` blocks. Folders are imported as ``govgym.<folder>``,
never by their bare name (``import envs`` would work only from a source checkout).

One documented exception: the package root ``govgym/__init__.py`` is the entry point, not the base.
It holds ``__version__`` (any module may read it: ``from govgym import __version__``) and, so that
``gymnasium.make("govgym/FineTune-v0")`` works after ``import govgym``, calls
``govgym.envs.register_envs`` inside a function; ``envs/__init__.py`` registers a *string* entry
point and imports no other govgym module, so importing the root loads nothing of efficiency/envs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["base", "efficiency", "envs", "agents", "deploy", "cli"]
FOLDERS = {
    "efficiency": "efficiency",
    "envs": "envs",
    "agents": "agents",
    "deploy": "deploy",
    "configs": "configs",
}
BARE = ("envs", "agents", "efficiency", "configs", "deploy")


def module_name(path: Path) -> str:
    """Dotted import name of a source file of the package (folders map to govgym.<folder>)."""
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[0] in FOLDERS:
        parts = ["govgym", FOLDERS[parts[0]], *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str | None:
    """The layer of a govgym module name; 'root' for the package root, None outside govgym."""
    parts = module.split(".")
    if parts[0] != "govgym":
        return None
    if len(parts) == 1:
        return "root"
    return {
        "efficiency": "efficiency",
        "envs": "envs",
        "agents": "agents",
        "deploy": "deploy",
        "cli": "cli",
        "__main__": "cli",  # python -m govgym: the CLI's entry point
    }.get(parts[1], "base")


def package_files() -> list[Path]:
    files = sorted((ROOT / "govgym").rglob("*.py"))
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every import statement anywhere in ``source``."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base, [a.name for a in node.names]))
    return out


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in ``source`` (the code of ``module``) that breaks the layering; [] when it is clean."""
    me = layer(module)
    bad = []
    for line, target, names in imports(source, module, is_package):
        top = target.split(".")[0]
        if top in BARE:
            bad.append(f"{module}:{line} imports the bare folder name {target!r}; import govgym.{target}")
            continue
        there = layer(target)
        if there is None:
            continue
        # `from govgym import envs` / `from govgym.efficiency import memstats` import submodules
        targets = [
            f"{target}.{n}" if there == "root" or _is_module(f"{target}.{n}") else target for n in names
        ] or [target]
        for t in targets:
            there = layer(t)
            if there == "root":
                if names != ["__version__"]:
                    bad.append(
                        f"{module}:{line} imports {names or 'govgym'} from the package root; only __version__ may be"
                    )
                continue
            if me == "root":
                if t != "govgym.envs":
                    bad.append(
                        f"{module}:{line}: the package root imports {t}; it may import only govgym.envs (registration)"
                    )
                continue
            if ORDER.index(there) > ORDER.index(me):
                bad.append(f"{module}:{line}: {me} module imports {t} ({there}), a higher layer")
    return bad


def _is_module(name: str) -> bool:
    parts = name.split(".")
    if parts[0] != "govgym" or len(parts) < 2:
        return False
    folder = ROOT / FOLDERS.get(parts[1], f"govgym/{parts[1]}")
    path = folder.joinpath(*parts[2:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_arrow_points_up():
    files = package_files()
    assert len(files) > 30  # the walk found the package
    bad = []
    for f in files:
        bad += violations(f.read_text(encoding="utf-8"), module_name(f), f.name == "__init__.py")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


BASE = {
    "govgym.typed": "typed config dataclasses and their YAML loading",
    "govgym.errors": "the error types and the closest-match helper",
    "govgym.results": "atomic writes and strict JSON/CSV result files",
    "govgym.sealed": "self-hashed JSON files and the names they list",
    "govgym.plots": "matplotlib without a display",
    "govgym.configs": "the packaged YAML presets (a package for importlib.resources)",
}
"""The base layer, each module with its one concern. A new govgym/*.py is listed here on purpose or fails."""


def test_every_module_has_a_layer():
    """The base stays small and known: exactly the modules of BASE, nothing added to it by accident."""
    layers = {module_name(f): layer(module_name(f)) for f in package_files()}
    assert layers["govgym"] == "root"
    base = {m for m, lay in layers.items() if lay == "base"}
    assert base == set(BASE), (
        f"base modules {sorted(base - set(BASE))} are not in BASE (add each with its one concern) and "
        f"{sorted(set(BASE) - base)} are missing"
    )
    assert layers["govgym.cli"] == "cli" and layers["govgym.efficiency.strategy"] == "efficiency"


def test_envs_init_imports_no_govgym_module():
    """What makes the root's registration import light: envs/__init__.py imports nothing of govgym."""
    src = (ROOT / "envs" / "__init__.py").read_text(encoding="utf-8")
    assert not [t for _, t, _ in imports(src, "govgym.envs", True) if t.startswith("govgym")]


def test_no_bare_folder_imports_in_tests_and_benchmarks():
    bad = []
    for f in [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]:
        bad += [
            f"{f.name}:{line} {t}"
            for line, t, _ in imports(f.read_text(encoding="utf-8"), "tests.x")
            if t.split(".")[0] in BARE
        ]
    assert not bad, bad


@pytest.mark.parametrize(
    "module, source, needle",
    [
        (
            "govgym.errors",
            "def f():\n    from govgym.efficiency.run import RunError\n",
            "higher layer",
        ),  # function-level
        ("govgym.efficiency.run", "import govgym.envs.finetune_env\n", "higher layer"),
        ("govgym.envs.memo", "from govgym.agents import heuristics\n", "higher layer"),
        ("govgym.agents.evaluate", "from govgym.cli.reports import format_table\n", "higher layer"),
        ("govgym.agents.tune", "from govgym.cli import reports\n", "higher layer"),
        ("govgym.typed", "from govgym import cli\n", "higher layer"),
        ("govgym.efficiency.run", "import govgym\n", "package root"),
        ("govgym.envs.finetune_env", "from envs.instances import load_instances\n", "bare folder"),
        ("govgym.efficiency.run", "from ..envs import memo\n", "higher layer"),  # relative
        ("govgym", "def f():\n    from govgym.agents import train\n", "only govgym.envs"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(module, source, needle):
    """The test above can fail: each kind of upward arrow, written into a module, is reported."""
    found = violations(source, module, module == "govgym")
    assert found and needle in found[0], found


def test_the_checker_accepts_downward_arrows():
    ok = "from govgym import __version__\nfrom govgym.efficiency.signals import Reading\nimport govgym.typed\nfrom govgym.results import write_rows\n"
    assert violations(ok, "govgym.envs.finetune_env") == []
    assert violations(ok, "govgym.cli.reports") == []


# ---------------------------------------------------------------------------- deploy/ runs without RL
DEPLOY_BLOCKED = ("stable_baselines3", "sb3_contrib", "gymnasium")
IMPORT_ALL_DEPLOY = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Block())
import govgym.deploy
names = sorted(m.name for m in pkgutil.iter_modules(govgym.deploy.__path__, "govgym.deploy."))
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print(len(names), "deploy modules imported")
"""


def deploy_import_check() -> subprocess.CompletedProcess:
    """Import every module of govgym.deploy in a fresh Python where SB3, sb3-contrib and gymnasium cannot load."""
    code = IMPORT_ALL_DEPLOY.format(blocked=DEPLOY_BLOCKED)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_deploy_imports_neither_sb3_nor_gymnasium():
    """README and deploy/__init__.py: a Trainer run with a governor needs neither SB3 nor gymnasium.

    Two checks: every deploy module imports in a Python that blocks them (catches a module-level import,
    direct or through any other govgym module), and no deploy source names them anywhere, function bodies
    included (catches an import that would only fail when that function runs).
    """
    r = deploy_import_check()
    assert r.returncode == 0, f"a deploy module needs SB3 or gymnasium:\n{r.stderr[-3000:]}"
    assert "deploy modules imported" in r.stdout
    direct = [
        f"{f.relative_to(ROOT)}:{line} imports {t}"
        for f in sorted((ROOT / "deploy").glob("*.py"))
        for line, t, _ in imports(f.read_text(encoding="utf-8"), module_name(f))
        if t.split(".")[0] in DEPLOY_BLOCKED
    ]
    assert not direct, direct

"""The packaging keeps up with the folders, and the installed package finds its own seeds.

pyproject.toml lists the packages by hand (the folders install under other names, which
setuptools' package discovery cannot follow), so a new subpackage that nobody adds there would
import in an editable checkout and be missing from every wheel. These tests make that list, the
package-dir mapping and the seed lookup fail loudly instead.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import adapterhub
from adapterhub.cli import server

REPO = Path(__file__).resolve().parents[1]
# import name of each root folder (DESIGN.md, "Layout")
ROOTS = {"adapterhub": "adapterhub", "adapterhub.compose": "compose", "adapterhub.registry": "registry",
         "adapterhub.cli": "cli", "adapterhub.web": "web"}
# packages that are data, not code: shipped so that `adapterhub up` seeds from any directory
DATA_PACKAGES = {"adapterhub.seed_adapters": "seed_adapters"}
BARE_NAMES = {"compose", "registry", "cli", "web"}


def setuptools_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def folders(root: Path):
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if "__pycache__" not in folder.parts:
            yield folder


def packages_on_disk() -> set[str]:
    found = set()
    for name, folder in ROOTS.items():
        for sub in folders(REPO / folder):
            if (sub / "__init__.py").is_file():
                found.add(".".join([name, *sub.relative_to(REPO / folder).parts]))
    return found


def test_the_package_list_is_every_folder_with_an_init():
    listed = setuptools_config()["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    on_disk = packages_on_disk() | set(DATA_PACKAGES)
    assert not on_disk - set(listed), f"add to [tool.setuptools] packages: {sorted(on_disk - set(listed))}"
    assert not set(listed) - on_disk, f"listed but no such package folder: {sorted(set(listed) - on_disk)}"


def test_every_folder_with_python_files_is_a_package():
    # a folder of modules without __init__.py would import in a checkout and be left out of the wheel
    for folder in ROOTS.values():
        for sub in folders(REPO / folder):
            if any(sub.glob("*.py")):
                assert (sub / "__init__.py").is_file(), f"{sub.relative_to(REPO)}/ has modules but no __init__.py"


def test_package_dir_maps_the_five_roots_and_the_seeds():
    assert setuptools_config()["package-dir"] == {**ROOTS, **DATA_PACKAGES}
    for folder in [*ROOTS.values(), *DATA_PACKAGES.values()]:
        assert (REPO / folder).is_dir(), folder


def imported_names(path: Path):
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError:  # another test's problem
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_nothing_imports_a_bare_folder_name():
    # lint-imports checks the package; this covers what it does not see: tests/, bench/, seed_adapters/
    bad = []
    for top in ("tests", "bench", "seed_adapters", *ROOTS.values()):
        for path in sorted((REPO / top).rglob("*.py")):
            bad += [f"{path.relative_to(REPO)}: {name}" for name in imported_names(path)
                    if name.split(".")[0] in BARE_NAMES]
    assert not bad, "import adapterhub.<room>, never the bare folder name:\n" + "\n".join(bad)


def test_seeds_are_found_from_the_package_in_any_directory(tmp_path):
    code = "from adapterhub.cli.server import seed_root; print(seed_root())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == REPO / "seed_adapters"


def test_up_seeds_from_the_package_wherever_it_starts(tmp_path, monkeypatch):
    import adapterhub.registry.seeding as seeding

    seen = []
    monkeypatch.setattr(seeding, "seed_registry", lambda hub, root, say: seen.append(root) or [])
    monkeypatch.chdir(tmp_path)
    assert server.seed_step("http://127.0.0.1:9", "token", first_start=True) is None
    assert seen == [REPO / "seed_adapters"]


def test_an_install_without_seeds_says_so_and_starts_empty(tmp_path, monkeypatch, capsys):
    (tmp_path / "adapterhub").mkdir()
    monkeypatch.setattr(adapterhub, "__file__", str(tmp_path / "adapterhub" / "__init__.py"))
    monkeypatch.chdir(tmp_path)
    assert server.seed_root() is None
    assert server.seed_step("http://127.0.0.1:9", "token", first_start=True) is None
    assert "no seed adapters" in capsys.readouterr().err


@pytest.mark.slow
def test_the_wheel_ships_every_package_and_the_seeds(tmp_path):
    # built from a copy, since setuptools writes build/ and *.egg-info/ beside the sources (and reuses a
    # stale build/); --no-build-isolation: the installed setuptools, so nothing is downloaded
    source = tmp_path / "src"
    keep = {"pyproject.toml", "README.md", *ROOTS.values(), *DATA_PACKAGES.values()}
    shutil.copytree(REPO, source, ignore=lambda d, names: [n for n in names if (Path(d) == REPO and n not in keep)
                                                             or n == "__pycache__"])
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
           "--disable-pip-version-check", "-w", str(tmp_path), str(source)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("adapterhub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in packages_on_disk():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    seeds = REPO / "seed_adapters"
    for path in sorted(seeds.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".safetensors"):
            assert f"adapterhub/seed_adapters/{path.relative_to(seeds).as_posix()}" in names, path

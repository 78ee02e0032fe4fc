"""The distribution a distro ships: `pip install .` puts the command `kvmconf` and the
whole tree (suites, conftest, expectations, profiles, LAVA) under one top-level name,
`kvmconf`, and the installed command runs a case from a folder outside the checkout,
writing its reports there."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.paths import ROOT
from tests.kvmdev import child_env, device_problem


def test_every_folder_of_harness_is_packaged() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"kvmconf.tree." + ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "harness").rglob("__init__.py")}
    assert folders - listed == set(), "add these to pyproject.toml's packages"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` into a folder of its own (the dependencies are this venv's)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_the_install_has_one_top_level_name_and_the_whole_tree(installed: Path) -> None:
    top = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top == {"kvmconf"}, "a generic top-level module would collide with other projects'"
    tree = installed / "kvmconf" / "tree"
    for part in ("conftest.py", "suites/test_sizing.py", "expectations/6.18-kvm_pvm.toml", "harness/abi/profiles/released.toml",
                 "harness/report/report.css", "lava/kvmconf.yaml", "lava/publish-report.sh"):
        assert (tree / part).is_file(), part
    (info,) = installed.glob("kvmconf-*.dist-info")
    assert "kvmconf = kvmconf:main" in (info / "entry_points.txt").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in next(info.rglob("LICENSE")).read_text()


def test_the_installed_command_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    problem = device_problem()
    if problem:
        pytest.skip(problem)
    start = f"import sys; sys.path.insert(0, {str(installed)!r}); sys.argv[0] = 'kvmconf'; import kvmconf; kvmconf.main()"
    done = subprocess.run([sys.executable, "-c", start, "run", "-n", "0", "-k", "test_fstat"], cwd=tmp_path,
                          env={**child_env(), "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith(f"reports: {tmp_path / 'reports'}/")
    assert (tmp_path / "reports" / "latest" / "report.html").is_file()
    assert not (installed / "kvmconf" / "tree" / "reports").exists(), "reports written into the installed package"

"""Where the project's own files are: the one definition of the project root."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "suites"
EXPECTATIONS_DIR = ROOT / "expectations"
CHECKOUT = (ROOT / "pyproject.toml").exists()  # a clone of the repository, not the installed package
REPORTS = ROOT / "reports" if CHECKOUT else Path.cwd() / "reports"  # installed: where the user runs it


def shown_path(path: str) -> str:
    """A file of the project as the project names it (expectations/6.18-kvm_pvm.toml),
    any other by its own name: no host's folders in a report or on the console."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name

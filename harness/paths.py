"""Where the project's own files are: the one definition of the project root."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "suites"
EXPECTATIONS_DIR = ROOT / "expectations"
REPORTS = ROOT / "reports"

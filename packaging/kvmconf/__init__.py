"""The installed `kvmconf` command.

The distribution installs the project's tree as it is in the repository (harness/,
suites/, conftest.py, expectations/, lava/) under this package, as `kvmconf/tree/`,
and puts that folder on sys.path only inside the kvmconf process: site-packages gets
one top-level name, `kvmconf`, and no generic `harness` to collide with another
project's (docs/notes.md: "Packaging").
"""

from __future__ import annotations

import sys
from pathlib import Path

TREE = Path(__file__).resolve().parent / "tree"


def main() -> None:
    sys.path.insert(0, str(TREE))
    from harness.cli.main import main as cli_main

    sys.exit(cli_main())

"""`python -m harness.cli`: the kvmconf command."""

import sys

from harness.cli.main import main

sys.exit(main())

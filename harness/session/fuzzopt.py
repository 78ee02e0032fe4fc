"""`--fuzz-examples N`: how many structs each property-based case draws.

Without it the property cases are deterministic, as CI needs: hypothesis derandomized
(examples derived from the test itself), a fixed count, no example database. With it,
they fuzz: N examples per case from a random seed (hypothesis prints the seed and the
shrunk counterexample when one fails).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

CI_EXAMPLES = 100


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("kvmconf").addoption(
        "--fuzz-examples", type=int, default=None, metavar="N",
        help=f"property-based cases: N random examples each (default: {CI_EXAMPLES}, derandomized)",
    )


def fuzz_settings(config: pytest.Config) -> settings:
    """Hypothesis settings for one property case under this session's options."""
    n = config.getoption("fuzz_examples")
    return settings(
        max_examples=CI_EXAMPLES if n is None else int(n),
        derandomize=n is None,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )

"""Root conftest: the kvmconf plugin serves the suites and the project's own tests."""

pytest_plugins = ["harness.session.plugin", "harness.session.health", "harness.session.fuzzopt"]

"""Root conftest: the kvmconf plugin serves the suites and the project's own tests."""

pytest_plugins = ["harness.plugin", "harness.health", "harness.model.fuzzopt"]

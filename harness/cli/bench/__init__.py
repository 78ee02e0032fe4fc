"""`kvmconf bench` (command.py) and its parts: ioctls, runs, vm; the figures are pure (harness.report.bench)."""

"""The host drives, the guest executes: a backend whose calls a small executor makes."""

"""`python -m kvmconf`, the same as the `kvmconf` command."""

from kvmconf import main

main()

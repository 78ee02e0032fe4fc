"""Surfaces: one declaration per ioctl or file call (pure), registered in `registry`."""

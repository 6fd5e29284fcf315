"""Reproducible performance benchmark for ovpn-toolkit: run ``python bench/run.py``."""

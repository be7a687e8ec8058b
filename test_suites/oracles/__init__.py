"""Slow scalar ports of reference implementations, used only as test oracles."""

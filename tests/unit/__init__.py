"""Unit tests: pure functions and single-process checks (no worker, no beat)."""

"""Contract tests: one table per adapter through one harness, and the platform sandboxes themselves."""

"""Test support shipped with the package: toy stages, a real redis-server, the stage harness."""

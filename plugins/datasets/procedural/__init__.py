"""The embedded procedural speech corpus."""

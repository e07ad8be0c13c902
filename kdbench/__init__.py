"""kdbench: a plugin-based benchmark of knowledge distillation for speech denoising."""

__version__ = "0.1.0"

RESULT_VERSION = 1
"""Bumped whenever a change alters the numbers a trial produces.

It enters every trial id and teacher-cache key, so results made by older code are never
mixed with new ones; a purely cosmetic release leaves it alone and keeps old results valid.
"""

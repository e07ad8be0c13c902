"""Relational KD for kdbench, as an installable third-party plugin."""

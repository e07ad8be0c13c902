"""Named presets shipped with kdbench (`--preset NAME`), installed as `kdbench_configs`."""

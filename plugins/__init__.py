"""kdbench's built-in plugins, installed as `kdbench_plugins`.

They are written only against `kdbench.api` and registered through the ``kdbench``
entry-point group, exactly as a third-party package would be.
"""

"""The plugin machinery: the hooks kdbench calls, the registry that loads entry points
and checks what they register, and the generated hook reference."""

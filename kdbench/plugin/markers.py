"""The pluggy markers, apart from the hook declarations so that `kdbench.api` can hand
`hookimpl` to plugin authors without importing the hookspecs, which import the API's
contract classes to say what each hook registers."""

import pluggy

PROJECT = "kdbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

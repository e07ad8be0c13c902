"""The plugin author's own test: kdbench's conformance kit on the new method."""

from kdbench_relational.plugin import RelationalMethod

from kdbench.testing import check_method


def test_relational_passes_the_conformance_kit():
    check_method(RelationalMethod)

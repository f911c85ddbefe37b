"""The public face of the package is small and deliberate: changing it must change this test."""

import conveyor


def test_public_names_are_pinned() -> None:
    assert sorted(conveyor.__all__) == ["Model", "__version__", "load", "open_registry", "register"]


def test_every_public_name_exists() -> None:
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name

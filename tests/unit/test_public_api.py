"""The public face of the package is small and deliberate: changing it must change this test."""

from pathlib import Path

import pytest

import conveyor
from conveyor.errors import InvalidInput
from conveyor.settings import Settings


def test_public_names_are_pinned() -> None:
    assert sorted(conveyor.__all__) == ["Model", "__version__", "load", "open_registry", "register"]


def test_every_public_name_exists() -> None:
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def test_a_name_or_alias_the_registry_refuses_is_refused_before_any_conversion(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    missing = tmp_path / "missing.onnx"  # converting it would fail otherwise, and later
    for name, aliases in (("bad name!", None), ("iris", ["7"])):
        with pytest.raises(InvalidInput, match=r"invalid (model name|alias)"):
            conveyor.register(name, missing, aliases=aliases, settings=settings)
    assert not (tmp_path / "home").exists()  # no registry was even opened

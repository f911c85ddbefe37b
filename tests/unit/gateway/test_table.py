"""The routing table: by version, by alias, the highest version by default; NotFound names what is served."""

from __future__ import annotations

import pytest

from conveyor.errors import Conflict, NotFound
from conveyor.gateway.table import Route, RoutingTable


def _table() -> RoutingTable:
    routes = [Route("lr", "2"), Route("lr", "10"), Route("lr", "1"), Route("solo", None)]
    return RoutingTable(routes, {("lr", "production"): "2"})


def test_versions_and_the_default_is_the_highest_numerically() -> None:
    t = _table()
    assert t.resolve("lr", None).version == "10"
    assert t.resolve("lr", "1").version == "1"
    assert t.versions("lr") == ["1", "2", "10"]
    assert t.resolve("solo", None).version is None


def test_an_alias_resolves_to_its_version() -> None:
    t = _table()
    assert t.resolve("lr", "production") is t.resolve("lr", "2")
    assert len(t.routes) == 4


def test_unknown_model_or_version_is_not_found_naming_what_is_served() -> None:
    t = _table()
    with pytest.raises(NotFound, match="served: lr, solo"):
        t.resolve("nope", None)
    with pytest.raises(NotFound, match="served versions: 1, 2, 10"):
        t.resolve("lr", "3")


def test_an_alias_to_a_version_not_served_is_refused() -> None:
    with pytest.raises(NotFound, match="production"):
        RoutingTable([Route("lr", "1")], {("lr", "production"): "2"})


def test_a_route_marked_default_is_what_a_bare_name_reaches() -> None:
    t = RoutingTable([Route("lr", "1", default=True), Route("lr", "2")])
    assert t.resolve("lr", None).version == "1"
    assert t.resolve("lr", "2").version == "2"


def test_two_defaults_of_one_name_are_refused() -> None:
    with pytest.raises(Conflict, match="more than one version of 'lr'"):
        RoutingTable([Route("lr", "1", default=True), Route("lr", "2", default=True)])

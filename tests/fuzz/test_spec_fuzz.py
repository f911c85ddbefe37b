"""The spec loader under hypothesis: any YAML text, any document, answers resources or InvalidInput."""

from __future__ import annotations

import time

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.errors import InvalidInput
from conveyor.spec.loader import load_documents
from tests.fuzz.strategies import FUZZ, nested, spec_documents

FAST_S = 5.0  # milliseconds, in fact: this only catches a hang (or an alias bomb) on a loaded CI machine


def load(text: str) -> None:
    start = time.perf_counter()
    try:
        load_documents(text, source="fuzz.yaml")
    except InvalidInput as exc:
        assert exc.message.startswith("fuzz.yaml:"), exc.message
    finally:
        assert time.perf_counter() - start < FAST_S


def yaml_text(doc: object) -> str:
    try:
        return str(yaml.safe_dump(doc, allow_unicode=True))
    except (yaml.YAMLError, RecursionError):
        return repr(doc)


@FUZZ
@given(st.text(max_size=300))
@example("a: " + "[" * 2000)
@example("- " * 3000 + "x")
@example("a: !!python/object:os.system x")
@example("a: &a [1, *a]")
def test_any_text_loads_or_gets_invalid_input_naming_the_file(text: str) -> None:
    load(text)


@FUZZ
@given(spec_documents(), st.booleans())
def test_any_document_loads_or_gets_invalid_input_naming_the_file(doc: object, multi: bool) -> None:
    text = yaml_text(doc)
    load(f"---\n{text}---\n{text}" if multi else text)


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 70 + "]" * 70,
        "- " * 70 + "x",
        "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70)),
    ],
)
def test_a_spec_nested_deeper_than_max_json_depth_is_invalid_naming_the_limit(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"nested more than 64 levels deep \(the max_json_depth limit\)"):
        load_documents(text)


def test_a_spec_whose_aliases_expand_without_end_is_refused_in_time() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    start = time.perf_counter()
    with pytest.raises(InvalidInput, match="more than 100000 values once aliases are expanded"):
        load_documents("\n".join(lines))
    assert time.perf_counter() - start < FAST_S


def test_a_spec_at_the_depth_limit_reads_as_usual() -> None:
    with pytest.raises(InvalidInput, match="apiVersion: missing"):  # read, then validated
        load_documents("a: " + str(nested(63, 1)))

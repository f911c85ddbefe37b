"""Pipelines: each part's outputs feed the next part's inputs, merged with ``onnx.compose.merge_models``
into one graph that takes the first part's inputs and gives the last part's outputs.

The rule that links two parts: every input of the next part takes the previous part's output of the same
name; when not every input finds one, they are taken by position (input i takes output i). A linked pair
must have the same datatype and shapes that fit; anything else is refused, naming both."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import compose, helper

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line
from conveyor.formats.samples import Array
from conveyor.fuse.graph import checked, identity, prefix
from conveyor.fuse.parts import Part, describe, shapes_fit, tensors

Link = tuple[str, str]  # (output of the previous part, input of the next)


@dataclass(frozen=True)
class PipelinePlan:
    links: tuple[tuple[Link, ...], ...]  # links[k]: what feeds part k + 1
    by: tuple[str, ...]  # "name" or "position", per pair of parts


def plan(parts: list[Part]) -> PipelinePlan:
    clash = {t.name for t in parts[0].signature.inputs} & {t.name for t in parts[-1].signature.outputs}
    if clash:
        raise InvalidInput(
            f"pipeline: {parts[0].ref} takes and {parts[-1].ref} gives "
            f"{', '.join(map(repr, sorted(clash)))}: a model cannot have an input and an output of one name"
        )
    links, by = [], []
    for before, after in itertools.pairwise(parts):
        pair, how = _link(before, after)
        links.append(pair)
        by.append(how)
    return PipelinePlan(tuple(links), tuple(by))


def _link(before: Part, after: Part) -> tuple[tuple[Link, ...], str]:
    outs = {t.name: t for t in before.signature.outputs}
    ins = after.signature.inputs
    if all(t.name in outs for t in ins):
        pairs, how = [(outs[t.name], t) for t in ins], "name"
    elif len(ins) <= len(before.signature.outputs):
        pairs, how = list(zip(before.signature.outputs, ins, strict=False)), "position"
    else:
        raise InvalidInput(
            f"pipeline: {before.ref} gives {tensors(before.signature.outputs)}, too few for {after.ref}, "
            f"which takes {tensors(ins)}"
        )
    for out, inp in pairs:
        if out.datatype != inp.datatype or not shapes_fit(out.shape, inp.shape):
            raise InvalidInput(
                f"pipeline: {before.ref}'s output {describe(out)} cannot feed {after.ref}'s input "
                f"{describe(inp)} (matched by {how})"
            )
    return tuple((o.name, i.name) for o, i in pairs), how


def build(parts: list[Part], p: PipelinePlan, name: str) -> onnx.ModelProto:
    """The parts merged two at a time (``merge_models`` with the links as its io_map), each part's names
    prefixed ``p{k}_``; the model's inputs and outputs keep the first part's and the last part's names."""
    prefixed = [prefix(part.model, k) for k, part in enumerate(parts)]
    last = len(parts) - 1
    merged = prefixed[0]
    for k in range(1, len(parts)):
        io_map = [(f"p{k - 1}_{o}", f"p{k}_{i}") for o, i in p.links[k - 1]]
        keep = [o.name for o in prefixed[k].graph.output]  # prefixed already
        try:
            merged = compose.merge_models(merged, prefixed[k], io_map=io_map, outputs=keep, name=name)
        except Exception as e:  # merge_models raises ValueError, onnx's own errors
            raise ConversionError(
                f"cannot merge {parts[k - 1].ref} into {parts[k].ref}: {first_line(e)}"
            ) from e
    graph = merged.graph
    inputs = [_renamed(v, v.name.removeprefix("p0_")) for v in graph.input]
    outputs = [_renamed(v, v.name.removeprefix(f"p{last}_")) for v in graph.output]
    feeds = [identity(v.name, f"p0_{v.name}") for v in inputs]
    results = [identity(f"p{last}_{v.name}", v.name) for v in outputs]
    rebuilt = helper.make_graph(
        [*feeds, *graph.node, *results],
        name,
        inputs,
        outputs,
        initializer=graph.initializer,
        value_info=graph.value_info,
        sparse_initializer=graph.sparse_initializer,
    )
    merged.graph.CopyFrom(rebuilt)
    merged.producer_name = "conveyor fuse"
    return checked(merged)


def _renamed(info: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(info)
    out.name = name
    return out


Run = Callable[[int, dict[str, Array]], dict[str, Array]]


def chain(p: PipelinePlan, first: dict[str, Array], run: Run) -> dict[str, Array]:
    """What the fused graph must answer: the parts run one after another (``run(k, inputs)`` runs part k),
    each fed the previous one's outputs as the links say."""
    out = run(0, first)
    for k, links in enumerate(p.links, start=1):
        out = run(k, {i: np.asarray(out[o]) for o, i in links})
    return out


def describe_plan(p: PipelinePlan, refs: list[str]) -> str:
    """``pipeline scaler:1 → mlp:2``"""
    return "pipeline " + " → ".join(refs)

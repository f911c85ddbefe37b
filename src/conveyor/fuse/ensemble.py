"""Ensembles: parts that take the same inputs, merged into one graph whose outputs combine theirs with graph
operators — float outputs averaged (weighted or not); integer outputs (a classifier's label) the class of the
highest averaged probability (mean, weighted: a soft vote) or the majority of the parts' labels (vote, and
any label whose classes the graphs do not name) — and the same combination in numpy, which the fused graph
is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from conveyor.errors import InvalidInput
from conveyor.formats.samples import Array
from conveyor.formats.signature import TensorSpec
from conveyor.fuse.graph import identity, prefix, union_model
from conveyor.fuse.labels import SoftLabel, argmax_labels, classes_of, soft_label
from conveyor.fuse.parts import Part, shapes_fit, tensors
from conveyor.protocol.datatypes import numpy_dtype

KINDS = ("mean", "weighted", "vote")
FLOATS = ("FP16", "FP32", "FP64")
INTEGERS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


@dataclass(frozen=True)
class EnsemblePlan:
    """What the fused graph computes: for each of its outputs, the parts' outputs it combines, and how."""

    kind: str
    weights: tuple[float, ...]  # as given (all 1 for mean): votes count them, averages normalize them
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[tuple[TensorSpec, tuple[str, ...]], ...]  # (fused output, each part's output name)
    soft: tuple[SoftLabel, ...] = ()  # the labels answered as the argmax of averaged probabilities

    def soft_rule(self, label: str) -> SoftLabel | None:
        return next((r for r in self.soft if r.label == label), None)

    def label_rules(self) -> dict[str, str]:
        """How each integer output is decided, in words (stored with the version)."""
        return {
            f.name: (
                f"the class of the highest {r.probabilities}"
                if (r := self.soft_rule(f.name))
                else "the majority of the parts' labels, ties to the smallest"
            )
            for f, _ in self.outputs
            if f.datatype in INTEGERS
        }

    @property
    def shares(self) -> tuple[float, ...]:
        """The weights normalized to sum to 1: what each part's float outputs are multiplied by."""
        total = sum(self.weights)
        return tuple(w / total for w in self.weights)


def plan(parts: list[Part], kind: str, weights: list[float] | None) -> EnsemblePlan:
    """Check that the parts can be combined as ``kind`` says (InvalidInput naming what differs)."""
    if kind not in KINDS:
        raise InvalidInput(f"--ensemble must be {', '.join(KINDS)}, not {kind!r}")
    checked = _weights(kind, weights, len(parts))
    first = parts[0]
    for p in parts[1:]:
        if not _same_tensors(first.signature.inputs, p.signature.inputs, by_name=True):
            raise InvalidInput(
                f"ensemble parts take different inputs: {first.ref} takes {tensors(first.signature.inputs)}; "
                f"{p.ref} takes {tensors(p.signature.inputs)}"
            )
    outputs = _match_outputs(parts)
    for fused, _ in outputs:
        if fused.datatype not in FLOATS + INTEGERS:
            raise InvalidInput(
                f"output {fused.name!r} is {fused.datatype}: an ensemble averages numbers and votes on "
                "integer labels only"
            )
    if kind == "vote" and not any(f.datatype in INTEGERS for f, _ in outputs):
        raise InvalidInput(
            f"--ensemble vote needs a label output (an integer tensor, as a classifier's 'label'); "
            f"{first.ref} gives {tensors(first.signature.outputs)}: use --ensemble mean"
        )
    inputs = tuple(_merged(ts) for ts in zip(*(p.signature.inputs for p in parts), strict=True))
    soft: list[SoftLabel] = []
    if kind != "vote":
        floats = [f for f, _ in outputs if f.datatype in FLOATS]
        classes = [classes_of(p.model) for p in parts]
        for f, _ in outputs:
            rule = soft_label(f, floats, classes) if f.datatype in INTEGERS else None
            if rule is not None:
                soft.append(rule)
    return EnsemblePlan(kind, checked, inputs, outputs, tuple(soft))


def _weights(kind: str, weights: list[float] | None, n: int) -> tuple[float, ...]:
    if weights is None:
        if kind == "weighted":
            raise InvalidInput("--ensemble weighted needs --weights: one number per part")
        return (1.0,) * n
    if kind == "mean":
        raise InvalidInput(
            "--weights goes with --ensemble weighted (or vote); mean gives every part the same"
        )
    if len(weights) != n:
        raise InvalidInput(f"--weights has {len(weights)} numbers for {n} parts: give one per part")
    if any(not (w >= 0 and np.isfinite(w)) for w in weights) or sum(weights) <= 0:
        raise InvalidInput(f"--weights must be numbers >= 0, not all 0: {weights}")
    return tuple(float(w) for w in weights)


def _same_tensors(a: tuple[TensorSpec, ...], b: tuple[TensorSpec, ...], *, by_name: bool) -> bool:
    if len(a) != len(b):
        return False
    if by_name and sorted(t.name for t in a) != sorted(t.name for t in b):
        return False
    pairs = (
        [(t, next(u for u in b if u.name == t.name)) for t in a] if by_name else list(zip(a, b, strict=True))
    )
    return all(t.datatype == u.datatype and shapes_fit(t.shape, u.shape) for t, u in pairs)


def _match_outputs(parts: list[Part]) -> tuple[tuple[TensorSpec, tuple[str, ...]], ...]:
    """Outputs matched by name; parts with one output each are matched whatever their names (the first
    part's name is kept)."""
    first = parts[0].signature.outputs
    single = all(len(p.signature.outputs) == 1 for p in parts)
    for p in parts[1:]:
        if not _same_tensors(first, p.signature.outputs, by_name=not single):
            raise InvalidInput(
                f"ensemble parts give different outputs: {parts[0].ref} gives {tensors(first)}; "
                f"{p.ref} gives {tensors(p.signature.outputs)}"
            )
    out = []
    for spec in first:
        if single:
            specs = [p.signature.outputs[0] for p in parts]
        else:
            specs = [next(t for t in p.signature.outputs if t.name == spec.name) for p in parts]
        out.append((_merged(tuple(specs), name=spec.name), tuple(t.name for t in specs)))
    return tuple(out)


def _merged(specs: tuple[TensorSpec, ...], name: str | None = None) -> TensorSpec:
    """One spec for tensors that fit each other: a dimension fixed in any of them is fixed."""
    shape = tuple(max(dims) for dims in zip(*(t.shape for t in specs), strict=True))
    return TensorSpec(name or specs[0].name, specs[0].datatype, shape)


# -- the graph --


def build(parts: list[Part], p: EnsemblePlan, name: str) -> onnx.ModelProto:
    """One graph: each part's nodes under its own prefix (``p0_``, ``p1_``...), fed the shared inputs, and
    the combiner's nodes reading their outputs."""
    prefixed = [prefix(part.model, i) for i, part in enumerate(parts)]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for i in range(len(parts)):
        nodes += [identity(t.name, f"p{i}_{t.name}") for t in p.inputs]
    for m in prefixed:
        nodes += list(m.graph.node)
    # float outputs first: a soft label reads the averaged probabilities
    for fused, names in sorted(p.outputs, key=lambda o: o[0].datatype in INTEGERS):
        outs = [f"p{i}_{n}" for i, n in enumerate(names)]
        rule = p.soft_rule(fused.name)
        if rule is not None:
            n, init = _soft_nodes(fused, rule)
        elif fused.datatype in INTEGERS:
            n, init = _vote_nodes(fused, outs, p.weights)
        else:
            n, init = _mean_nodes(fused, outs, p.shares if p.kind != "mean" else None)
        nodes += n
        inits += init
    first = parts[0].model.graph
    graph_inputs = [next(v for v in first.input if v.name == t.name) for t in p.inputs]
    graph_outputs = [_output_info(parts[0], names[0], fused) for fused, names in p.outputs]
    return union_model(prefixed, nodes, inits, graph_inputs, graph_outputs, name)


def _const(name: str, value: Array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _mean_nodes(
    fused: TensorSpec, outs: list[str], shares: tuple[float, ...] | None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``Mean`` of the parts' outputs, or the ``Sum`` of each multiplied by its share."""
    o = fused.name
    if shares is None:
        return [helper.make_node("Mean", outs, [o], name=f"fuse_mean_{o}")], []
    dtype = numpy_dtype(fused.datatype)
    inits = [_const(f"fuse_share{i}_{o}", np.asarray(s, dtype=dtype)) for i, s in enumerate(shares)]
    nodes = [
        helper.make_node("Mul", [out, f"fuse_share{i}_{o}"], [f"fuse_scaled{i}_{o}"])
        for i, out in enumerate(outs)
    ]
    nodes.append(helper.make_node("Sum", [f"fuse_scaled{i}_{o}" for i in range(len(outs))], [o]))
    return nodes, inits


def _soft_nodes(fused: TensorSpec, rule: SoftLabel) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``classes[ArgMax(probabilities)]``: the class of the highest averaged probability (``ArgMax``,
    ``Gather`` from the classes the parts' graphs name)."""
    o = fused.name
    table = _const(f"fuse_classes_{o}", np.asarray(rule.classes, dtype=numpy_dtype(fused.datatype)))
    nodes = [
        helper.make_node("ArgMax", [rule.probabilities], [f"fuse_top_{o}"], axis=-1, keepdims=0),
        helper.make_node("Gather", [f"fuse_classes_{o}", f"fuse_top_{o}"], [o], axis=0),
    ]
    return nodes, [table]


def _vote_nodes(
    fused: TensorSpec, outs: list[str], weights: tuple[float, ...]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Majority of the parts' labels: each part's label counts the weights of the parts that agree with
    it (``Equal``, ``Cast``, ``Mul``, ``Sum``); of the labels with the most, the smallest wins (``Where``
    keeps them, ``Min`` picks one) — the tie rule of scikit-learn's VotingClassifier(voting="hard")."""
    o, k = fused.name, len(outs)
    dtype = numpy_dtype(fused.datatype)
    inits = [_const(f"fuse_w{i}_{o}", np.asarray(w, dtype=np.float32)) for i, w in enumerate(weights)]
    inits.append(_const(f"fuse_none_{o}", np.asarray(np.iinfo(dtype).max, dtype=dtype)))
    nodes = []
    agree: dict[tuple[int, int], str] = {}
    for i in range(k):
        for j in range(i + 1, k):
            eq = f"fuse_eq{i}_{j}_{o}"
            nodes.append(helper.make_node("Equal", [outs[i], outs[j]], [eq + "_b"]))
            nodes.append(helper.make_node("Cast", [eq + "_b"], [eq], to=onnx.TensorProto.FLOAT))
            agree[(i, j)] = agree[(j, i)] = eq
    for i in range(k):
        terms = []  # in the parts' order, as ``vote`` adds them: the same float32 sums, the same ties
        for j in range(k):
            if j == i:
                terms.append(f"fuse_w{i}_{o}")
                continue
            nodes.append(helper.make_node("Mul", [agree[(i, j)], f"fuse_w{j}_{o}"], [f"fuse_v{i}_{j}_{o}"]))
            terms.append(f"fuse_v{i}_{j}_{o}")
        nodes.append(helper.make_node("Sum", terms, [f"fuse_count{i}_{o}"]))
    nodes.append(helper.make_node("Max", [f"fuse_count{i}_{o}" for i in range(k)], [f"fuse_most_{o}"]))
    for i in range(k):
        top = f"fuse_top{i}_{o}"
        nodes.append(helper.make_node("Equal", [f"fuse_count{i}_{o}", f"fuse_most_{o}"], [top]))
        nodes.append(helper.make_node("Where", [top, outs[i], f"fuse_none_{o}"], [f"fuse_cand{i}_{o}"]))
    nodes.append(helper.make_node("Min", [f"fuse_cand{i}_{o}" for i in range(k)], [o]))
    return nodes, inits


def _output_info(part: Part, name: str, fused: TensorSpec) -> onnx.ValueInfoProto:
    info = onnx.ValueInfoProto()
    info.CopyFrom(next(v for v in part.model.graph.output if v.name == name))
    info.name = fused.name
    return info


# -- the same in numpy --


def combine(p: EnsemblePlan, outputs: list[dict[str, Array]]) -> dict[str, Array]:
    """What the fused graph must answer, from each part's outputs run separately."""
    out: dict[str, Array] = {}
    for fused, names in sorted(p.outputs, key=lambda o: o[0].datatype in INTEGERS):
        values = [o[n] for o, n in zip(outputs, names, strict=True)]
        rule = p.soft_rule(fused.name)
        if rule is not None:
            out[fused.name] = argmax_labels(rule, out[rule.probabilities], values[0].dtype)
        elif fused.datatype in INTEGERS:
            out[fused.name] = vote(values, p.weights)
        elif p.kind == "mean":
            out[fused.name] = np.mean(np.stack(values), axis=0).astype(values[0].dtype)
        else:
            dtype = values[0].dtype
            total = sum(v * np.asarray(s, dtype=dtype) for v, s in zip(values, p.shares, strict=True))
            out[fused.name] = np.asarray(total, dtype=dtype)
    return out


def vote(labels: list[Array], weights: tuple[float, ...]) -> Array:
    """Row by row, the label with the largest summed weight of the parts giving it; ties: the smallest."""
    stacked = np.stack(labels, axis=-1)  # (..., parts)
    counts = np.zeros(stacked.shape, dtype=np.float32)
    for j, w in enumerate(weights):  # float32, in the parts' order: the graph's sums exactly
        counts += (stacked == stacked[..., j : j + 1]) * np.float32(w)
    top = counts == counts.max(axis=-1, keepdims=True)
    none = np.iinfo(stacked.dtype).max
    return np.asarray(np.where(top, stacked, none).min(axis=-1), dtype=stacked.dtype)


def describe_plan(p: EnsemblePlan, refs: list[str]) -> str:
    """``ensemble mean of a:1, b:2`` (weights named when given)."""
    what = f"ensemble {p.kind} of {', '.join(refs)}"
    if p.kind != "mean" and any(w != 1.0 for w in p.weights):
        what += f" (weights {', '.join(f'{w:g}' for w in p.weights)})"
    return what

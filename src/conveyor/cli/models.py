"""``conveyor models ...``: register, list, show, sign, alias and delete model versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import conveyor
from conveyor.cli.output import (
    console,
    err_console,
    human_size,
    human_time,
    print_json,
    shape_str,
    titled_table,
)
from conveyor.errors import InvalidInput
from conveyor.settings import get_settings

if TYPE_CHECKING:
    from conveyor.registry import Registry

app = typer.Typer(help="Register model versions and manage them in the registry.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def key_values(items: list[str], bad: str) -> dict[str, str]:
    """``KEY=VALUE`` items (--tag, --label) as a dict; one that is not: InvalidInput ``bad`` naming it."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(bad.format(repr(item)))
        out[key] = value
    return out


def _split_version_ref(ref: str) -> tuple[str, int]:
    name, sep, version = ref.rpartition(":")
    if not sep or not name or not version.isdigit():
        raise InvalidInput(f"{ref!r} is not NAME:VERSION (for example iris:3)")
    return name, int(version)


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Model name (letters, digits, '.', '_', '-').")],
    path: Annotated[
        Path,
        typer.Argument(
            help="Model file: .onnx, .skops, .pt/.pth/.pt2, XGBoost .json/.ubj, LightGBM .txt, "
            "or a pickle/joblib."
        ),
    ],
    framework: Annotated[
        str,
        typer.Option(
            help="Source format: auto, onnx, sklearn, pytorch, xgboost or lightgbm.", case_sensitive=False
        ),
    ] = "auto",
    sample: Annotated[
        Path | None,
        typer.Option(help="Sample inputs (.npy, .npz, .csv): check the conversion against the original."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference inputs (.npy, .npz, .csv, .json) drift is measured against "
            "(default: the --sample)."
        ),
    ] = None,
    alias: Annotated[
        list[str], typer.Option("--alias", "-a", help="Point this alias at the new version.")
    ] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option("--tag", "-t", help="KEY=VALUE tag; repeatable.")] = [],  # noqa: B006
    description: Annotated[str | None, typer.Option(help="Free-text description.")] = None,
    parent_version: Annotated[
        int | None, typer.Option(help="Lineage: the version this one was derived from.")
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow loading pickle/joblib files (unpickling runs code).")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Largest |diff| allowed between the converted model and the original "
            "(default: CONVEYOR_PARITY_TOLERANCE, 1e-4)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert a model to ONNX, check it against the original (on --sample, or on inputs derived from a
    scikit-learn model), and store it as a new version."""
    if framework.lower() not in {"auto", "onnx", "sklearn", "pytorch", "xgboost", "lightgbm"}:
        raise InvalidInput(
            f"--framework must be auto, onnx, sklearn, pytorch, xgboost or lightgbm, not {framework!r}"
        )
    if not path.exists():
        raise InvalidInput(f"model file {str(path)!r} does not exist")
    tags = key_values(tag, "tag {} is not KEY=VALUE")
    with console.status(f"Converting and registering [bold]{path.name}[/]…", spinner="dots"):
        info = conveyor.register(
            name,
            path,
            sample=sample,
            framework=framework.lower(),
            aliases=alias,
            tags=tags,
            description=description,
            parent_version=parent_version,
            trust_pickle=trust_pickle,
            tolerance=tolerance,
            reference=reference,
        )
        with conveyor.open_registry() as registry:
            same = [v.version for v in registry.list_versions(name) if v.sha256 == info.sha256]
    earlier = [v for v in same if v != info.version]
    parity = info.metadata.get("parity") or {}
    if parity.get("checked") is False:
        # stderr, so --json output stays one document; said on every register, not only in `models show`
        err_console.print(f"warning: parity not checked: {parity.get('reason')}")
    if as_json:
        print_json({**info.to_dict(), "already_registered_as": earlier})
        return
    console.print(f"[green]Registered[/] [bold]{info.name}:{info.version}[/] ({info.framework})")
    if earlier:
        refs = ", ".join(f"{name}:{v}" for v in earlier)
        console.print(f"already registered as {refs}: same sha256, the artifact is stored once")
    _print_version(info.to_dict())


@app.command("list")
def list_models(
    name: Annotated[
        str | None, typer.Argument(help="List this model's versions instead of all models.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered models, or the versions of one model."""
    with conveyor.open_registry() as registry:
        if name is not None:
            versions = _with_signatures(registry, name, registry.list_versions(name))
            if as_json:
                print_json(versions)
            else:
                _print_versions(name, versions)
            return
        models = [m.to_dict() for m in registry.list_models()]
    if as_json:
        print_json(models)
        return
    if not models:
        console.print("No models registered yet. Try: conveyor models register NAME FILE")
        return
    rows = [
        [
            m["name"],
            str(m.get("latest_version", "-")),
            str(m.get("version_count", "-")),
            ", ".join(f"{a}→{v}" for a, v in sorted(m.get("aliases", {}).items())) or "-",
            human_time(m.get("created_at")),
        ]
        for m in models
    ]
    table = titled_table("Models", ("name", "latest", "versions", "aliases", "created"), rows)
    console.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME (all versions), NAME:VERSION or NAME@ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one version (signature, digest, lineage, parity) or all versions of a model."""
    with conveyor.open_registry() as registry:
        if ":" not in ref and "@" not in ref:
            versions = _with_signatures(registry, ref, registry.list_versions(ref))
            if as_json:
                print_json({"name": ref, "versions": versions})
            else:
                _print_versions(ref, versions)
            return
        resolved = registry.resolve(ref)
        info = _with_signatures(registry, resolved.name, [resolved])[0]
        info["lineage"] = _lineage(registry, resolved)
        latest = registry.validations.latest(resolved.name, resolved.version)
        info["validation"] = latest.to_dict() if latest is not None else None  # conveyor validate's verdict
    if as_json:
        print_json(info)
    else:
        _print_version(info)


@app.command("sign")
def sign(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@ALIAS (NAME: production, else latest).")],
    key: Annotated[
        str | None,
        typer.Option(help="Key to sign with (CONVEYOR_HOME/keys/NAME.key); default: the only one."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a version with one of your Ed25519 keys: the signature covers the model name, the version
    number and the artifact's sha256, and is stored in the registry (deployments with
    requireSignedModels run only versions a trusted key signed)."""
    from conveyor.security.signing import find_key

    key_name, private = find_key(get_settings().keys_dir, key)
    with conveyor.open_registry() as registry:
        info = registry.sign_version(registry.resolve(ref), private)
    if as_json:
        print_json({**info.to_dict(), "key": key_name})
        return
    console.print(f"[green]Signed[/] [bold]{info.name}:{info.version}[/] with key {key_name} ({info.key_id})")


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version the alias should point at.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production or staging.")],
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS at NAME:VERSION (moves it atomically if it pointed elsewhere)."""
    with conveyor.open_registry() as registry:
        info = registry.set_alias(name, version, alias_name)
    if as_json:
        print_json(info.to_dict())
    else:
        console.print(f"[green]{name}@{alias_name}[/] → version {info.version}")


@app.command("delete")
def delete(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION to delete.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete one version (refused while an alias points at it)."""
    name, version = _split_version_ref(ref)
    with conveyor.open_registry() as registry:
        registry.delete_version(name, version)
    if as_json:
        print_json({"name": name, "version": version, "deleted": True})
    else:
        console.print(f"Deleted [bold]{name}:{version}[/]")


def _print_versions(name: str, versions: list[dict[str, Any]]) -> None:
    rows = [
        [
            str(v["version"]),
            v.get("framework") or "-",
            human_size(v["size_bytes"]),
            v["sha256"][:12],
            ", ".join(v.get("aliases", [])) or "-",
            str(v["parent_version"]) if v.get("parent_version") else "-",
            human_time(v.get("created_at")),
            v.get("created_by") or "-",
            _signed_line(v.get("signatures", [])),
        ]
        for v in versions
    ]
    columns = ("version", "framework", "size", "sha256", "aliases", "parent", "created", "by", "signed")
    table = titled_table(f"{name}: versions", columns, rows)
    console.print(table)


def _with_signatures(registry: Registry, name: str, versions: list[Any]) -> list[dict[str, Any]]:
    """Each version as a dict with ``signatures``: key id, the trusted key's name, whether it verifies
    (None: the key is not trusted here, so it cannot be checked)."""
    from conveyor.security.signing import trusted_keys, verifies

    trusted = trusted_keys(get_settings().effective_trusted_keys_dir)
    by_version = registry.signatures.of_model(name)
    out = []
    for v in versions:
        sigs = []
        for s in by_version.get(v.version, []):
            key = trusted.get(s.key_id)
            ok = None if key is None else verifies(key.key, s.signature, v.name, v.version, v.sha256)
            sigs.append(
                {"key_id": s.key_id, "key": key and key.name, "verifies": ok, "signed_by": s.signed_by}
            )
        out.append({**v.to_dict(), "signatures": sigs})
    return out


def _signed_line(signatures: list[dict[str, Any]]) -> str:
    """``ci (3f2a...)`` per signature; untrusted keys and signatures that do not verify say so."""
    if not signatures:
        return "-"
    words = {True: "", False: " DOES NOT VERIFY", None: " untrusted"}
    return ", ".join(f"{s['key'] or s['key_id']}{words[s['verifies']]}" for s in signatures)


def _parity_line(parity: dict[str, Any] | None) -> str:
    """What the conversion was checked on, and how closely it agreed; 'not checked' and why otherwise."""
    if not parity:
        return "not checked (no sample)"
    if parity.get("checked") is False:
        return f"not checked: {parity.get('reason')}"
    if "max_abs_diff" not in parity:
        return f"runs on {parity.get('samples', '?')} samples (no reference output to compare)"
    on = {"sample": "the given sample", "derived": "inputs derived from the model"}.get(
        parity.get("inputs", "sample"), "the given sample"
    )
    line = (
        f"max |diff| {parity['max_abs_diff']:.3g} (tolerance {parity.get('tolerance')}) "
        f"on {parity.get('samples', '?')} rows of {on}"
    )
    return line + (f"; conversion {parity['conversion']}" if parity.get("conversion") else "")


def _validated_line(run: dict[str, Any] | None) -> str:
    """The newest ``conveyor validate`` verdict: passed or the gates failed, when, against what, where the
    report is."""
    if not run:
        return "- (never: conveyor validate)"
    failed = [g["gate"] for g in run.get("gates", []) if not g.get("passed")]
    verdict = "passed" if run.get("passed") else f"FAILED ({', '.join(failed) or 'no gate'})"
    against = f" against {run['baseline']}" if run.get("baseline") else ""
    report = f"; report {run['report']}" if run.get("report") else ""
    return f"{verdict} {human_time(run.get('at'))}{against}{report}"


def _reference_line(reference: dict[str, Any] | None) -> str:
    """What drift of this version is measured against (docs/observability.md, Drift)."""
    if not reference:
        return "none (registered before reference statistics): no drift"
    if not reference.get("available"):
        return f"none: {reference.get('reason')}: no drift"
    return (
        f"{len(reference.get('features', []))} features from the {reference.get('source')} "
        f"({reference.get('rows')} rows, {reference.get('bins')} bins)"
    )


MAX_LINEAGE = 100


def _lineage(registry: Registry, v: Any) -> list[dict[str, Any]]:
    """The versions ``v`` was derived from, parent first, each with what made it from its own parent; a
    deleted ancestor ends the list with ``"deleted": True``."""
    from conveyor.errors import NotFound

    out: list[dict[str, Any]] = []
    seen = {v.version}
    parent = v.parent_version
    while parent is not None and parent not in seen and len(out) < MAX_LINEAGE:
        seen.add(parent)
        try:
            p = registry.get_version(v.name, parent)
        except NotFound:
            out.append({"ref": f"{v.name}:{parent}", "deleted": True})
            break
        out.append({"ref": p.ref, "source": p.metadata.get("source")})
        parent = p.parent_version
    return out


def _lineage_line(v: dict[str, Any]) -> str | None:
    """``mlp:3 ← mlp:2 ← mlp:1``: this version, then its ancestors; a fused one: ``ens:1 ← a:1 + b:2``."""
    chain = v.get("lineage")
    parts = (v.get("metadata") or {}).get("parts")
    if parts and not chain:
        return f"{v['name']}:{v['version']} ← " + " + ".join(parts)
    if not chain:
        return None
    refs = [f"{v['name']}:{v['version']}"] + [
        a["ref"] + (" (deleted)" if a.get("deleted") else "") for a in chain
    ]
    return " ← ".join(refs)


def _optimized_line(opt: dict[str, Any]) -> str:
    """What an optimization did and what it measured against the parent (conveyor optimize)."""
    before, after, data = opt.get("before") or {}, opt.get("after") or {}, opt.get("data") or {}
    method = {"none": "graph optimization"}.get(str(opt.get("method")), str(opt.get("method")))
    if opt.get("graph_opt") and opt.get("method") != "none":
        method += f" + graph optimization ({opt['graph_opt']})"
    parts = [f"{method} of {opt.get('parent')}"]
    if before.get("size_bytes") and after.get("size_bytes"):
        parts.append(f"{human_size(before['size_bytes'])} → {human_size(after['size_bytes'])}")
    drift = (after.get("drift") or {}).get("max_abs_diff")
    if drift is not None:
        bound = (opt.get("bounds") or {}).get("max_drift")
        parts.append(
            f"max |drift| {drift:.3g}"
            + (f" (bound {bound:g})" if bound is not None else "")
            + f" on {data.get('rows')} rows of {data.get('source')}"
        )
    q_before, q_after = before.get("quality") or {}, after.get("quality") or {}
    for key in ("accuracy", "f1", "rmse"):
        if key in q_before and key in q_after:
            parts.append(f"{key} {q_before[key]:.4g} → {q_after[key]:.4g}")
    t_before = (before.get("timing") or {}).get("1") or {}
    t_after = (after.get("timing") or {}).get("1") or {}
    if "p50_ms" in t_before and "p50_ms" in t_after:
        parts.append(f"p50 batch 1 {t_before['p50_ms']:.3f} → {t_after['p50_ms']:.3f} ms")
    return "; ".join(parts)


def _print_version(v: dict[str, Any]) -> None:
    console.print(f"[bold]{v['name']}:{v['version']}[/]  {v.get('description') or ''}")
    console.print(f"  sha256     {v['sha256']}")
    console.print(f"  size       {human_size(v['size_bytes'])}    framework {v.get('framework')}")
    console.print(f"  aliases    {', '.join(v.get('aliases', [])) or '-'}")
    console.print(f"  parent     {v.get('parent_version') or '-'}")
    console.print(f"  created    {human_time(v.get('created_at'))} by {v.get('created_by') or '-'}")
    if v.get("tags"):
        console.print("  tags       " + ", ".join(f"{k}={val}" for k, val in sorted(v["tags"].items())))
    lineage = _lineage_line(v)
    if lineage:
        console.print(f"  lineage    {lineage}")
    optimization = (v.get("metadata") or {}).get("optimization")
    fusion = (v.get("metadata") or {}).get("fusion")
    if optimization:
        console.print(f"  optimized  {_optimized_line(optimization)}")
    elif fusion:  # conveyor fuse: its parity is against the parts combined
        check = fusion.get("parity") or {}
        agree = "".join(f", {k} agrees {s:.0%}" for k, s in (check.get("agreement") or {}).items())
        console.print(
            f"  fused      {v.get('description')}; max |diff| {check.get('max_abs_diff', 0):.3g}{agree} "
            f"against {check.get('against', 'the parts')} on {check.get('rows')} rows ({check.get('source')})"
        )
    else:
        console.print(f"  parity     {_parity_line((v.get('metadata') or {}).get('parity'))}")
    console.print(f"  signed     {_signed_line(v.get('signatures', []))}")
    console.print(f"  validated  {_validated_line(v.get('validation'))}")
    console.print(f"  reference  {_reference_line((v.get('metadata') or {}).get('reference'))}")
    sig = v.get("signature") or {}
    rows = [
        [kind[:-1], t["name"], t["datatype"], shape_str(t["shape"])]
        for kind in ("inputs", "outputs")
        for t in sig.get(kind, [])
    ]
    table = titled_table("signature", ("", "name", "datatype", "shape"), rows)
    console.print(table)

"""``conveyor keys ...``: Ed25519 keypairs that sign model versions, and the keys trusted to have signed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from conveyor.cli.output import console, print_json, titled_table
from conveyor.settings import get_settings

app = typer.Typer(help="Create and list the Ed25519 keys that sign model versions.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Key name (letters, digits, '.', '_', '-').")],
    as_json: JsonOpt = False,
) -> None:
    """Create a keypair: NAME.key (private, mode 0600) and NAME.pub under CONVEYOR_HOME/keys. Give NAME.pub
    to whoever must trust your signatures: they copy it into their trusted keys directory."""
    from conveyor.security.signing import PUBLIC_SUFFIX, create_keypair

    directory = get_settings().keys_dir
    key = create_keypair(directory, name)
    public = directory / f"{name}{PUBLIC_SUFFIX}"
    if as_json:
        print_json({"name": key.name, "key_id": key.key_id, "public_key": str(public)})
        return
    console.print(f"[green]Created key[/] [bold]{key.name}[/] (id {key.key_id})")
    console.print(
        f"  public key {public} (share it: trusted keys are the *.pub files in the trust directory)"
    )


@app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """List your keypairs and the public keys you trust (the *.pub files of the trusted keys directory)."""
    from conveyor.security.signing import PRIVATE_SUFFIX, PUBLIC_SUFFIX, load_public_key, trusted_keys

    settings = get_settings()
    trusted = trusted_keys(settings.effective_trusted_keys_dir)
    rows: dict[str, dict[str, Any]] = {}
    if settings.keys_dir.is_dir():
        for pub in sorted(settings.keys_dir.glob(f"*{PUBLIC_SUFFIX}")):
            key = load_public_key(pub)
            private = pub.with_name(f"{key.name}{PRIVATE_SUFFIX}").is_file()
            rows[key.key_id] = {"name": key.name, "key_id": key.key_id, "private": private}
    for key in trusted.values():
        rows.setdefault(key.key_id, {"name": key.name, "key_id": key.key_id, "private": False})
    keys = [{**r, "trusted": r["key_id"] in trusted} for r in sorted(rows.values(), key=lambda r: r["name"])]
    if as_json:
        print_json(keys)
        return
    if not keys:
        console.print("No keys yet. Create one: conveyor keys create NAME")
        return
    table = titled_table(
        f"Keys (trusted: {settings.effective_trusted_keys_dir})",
        ("name", "key id", "can sign", "trusted"),
        [
            [k["name"], k["key_id"], "yes" if k["private"] else "-", "yes" if k["trusted"] else "-"]
            for k in keys
        ],
    )
    console.print(table)

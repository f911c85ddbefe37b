"""``conveyor tokens ...``: create, list and revoke the bearer tokens the management API and gateways ask for.

On the registry directly (CONVEYOR_HOME / CONVEYOR_DATABASE_URL: whoever can write the registry is its admin,
which is how the first token is made), or through a control plane's API with ``--url`` (an admin token).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from conveyor.cli.output import console, err_console, human_time, print_json, titled_table

app = typer.Typer(
    help="Bearer tokens and their roles: admin, deployer, viewer, predictor, gateway (docs/security.md).",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
ViaUrl = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Manage the tokens of the control plane at this URL through its API (needs an admin token: "
        "CONVEYOR_TOKEN). Default: this machine's registry directly.",
    ),
]


def _actor() -> str:
    from conveyor.settings import get_settings

    return f"user:{get_settings().user}"


@app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="A name for the token: who or what uses it (the audit log's actor).")
    ],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            "-r",
            help="admin (everything), deployer (register, apply, scale, roll back; read; predict), viewer "
            "(read), predictor (inference only), gateway (follow the routing table).",
        ),
    ],
    models: Annotated[
        str | None, typer.Option("--models", help="Predictor tokens: only the models matching this glob.")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expire after this long: 30d, 12h, 15m (default: never).")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", help="At most this many requests per second on the gateways (429 beyond).", min=0.001
        ),
    ] = None,
    url: ViaUrl = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once: only its salted hash is stored, it cannot be shown again."""
    from conveyor.security.tokens import parse_duration

    expires_in = parse_duration(expires) if expires is not None else None
    if url is not None:
        from conveyor.cli.client import api_client

        body: dict[str, Any] = {"name": name, "role": role, "models": models, "rateLimit": rate}
        if expires_in is not None:
            body["expiresInSeconds"] = expires_in
        with api_client(url) as api:
            doc = api.post("/tokens", body)
    else:
        with _registry() as registry:
            token, info = registry.tokens.create(
                name, role, models=models, expires_in_s=expires_in, rate_limit=rate, by=_actor()
            )
        doc = {"token": token, **info.to_dict()}
    if as_json:
        print_json(doc)
        return
    typer.echo(doc["token"])  # alone on stdout: TOKEN=$(conveyor tokens create ...) works
    until = f", expires {human_time(doc['expires_at'])}" if doc.get("expires_at") else ""
    err_console.print(
        f"token {doc['name']!r} ({doc['role']}{until}): shown once, keep it safe; "
        "send it as Authorization: Bearer <token>",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_tokens(
    all_: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    url: ViaUrl = None,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never the tokens themselves): name, id, role, models, state, expiry, who made them."""
    if url is not None:
        from conveyor.cli.client import api_client

        with api_client(url) as api:
            docs = api.get("/tokens?all=true" if all_ else "/tokens")["tokens"]
    else:
        with _registry() as registry:
            docs = [i.to_dict() for i in registry.tokens.list(include_revoked=all_)]
    if as_json:
        print_json({"tokens": docs})
        return
    rows = [
        [
            d["name"],
            d["id"],
            d["role"],
            d["models"] or "*",
            "-" if d["rate_limit"] is None else f"{d['rate_limit']:g}/s",
            d["state"],
            human_time(d["created_at"]),
            human_time(d["expires_at"]) if d["expires_at"] else "never",
        ]
        for d in docs
    ]
    columns = ("name", "id", "role", "models", "rate", "state", "created", "expires")
    console.print(titled_table("Tokens", columns, rows))


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Name (or id) of the live token to revoke.")],
    url: ViaUrl = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: the management API and every gateway refuse it within a second."""
    if url is not None:
        from conveyor.cli.client import api_client

        with api_client(url) as api:
            doc = api.call("DELETE", f"/tokens/{name}")
    else:
        with _registry() as registry:
            doc = registry.tokens.revoke(name, by=_actor()).to_dict()
    if as_json:
        print_json(doc)
        return
    console.print(f"token {doc['name']!r} ({doc['id']}) revoked", highlight=False)


def _registry() -> Any:
    from conveyor.api import open_registry

    return open_registry()

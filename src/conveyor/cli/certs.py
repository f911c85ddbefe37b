"""``conveyor certs dev`` (a local CA and a server certificate for trying TLS) and the --tls-cert / --tls-key
options of the commands that serve (serve, gateway, server, up)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.output import console, print_json

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls
    from conveyor.settings import Settings

app = typer.Typer(help="Certificates for serving TLS.", no_args_is_help=True)

TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        metavar="FILE",
        help="Serve TLS (https://, gRPC over TLS) with this PEM certificate chain; with --tls-key "
        "(default: $CONVEYOR_TLS_CERT_FILE).",
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-key",
        metavar="FILE",
        help="PEM private key of --tls-cert (default: $CONVEYOR_TLS_KEY_FILE).",
    ),
]


def with_tls(settings: Settings, cert: Path | None, key: Path | None) -> tuple[Settings, ServerTls | None]:
    """The settings with --tls-cert / --tls-key applied (as absolute paths, for child processes), and the
    checked pair to serve; None when TLS is off. Checked before anything starts: a bad file is one line."""
    from conveyor.security.tls import settings_server_tls

    update = {k: v.absolute() for k, v in (("tls_cert_file", cert), ("tls_key_file", key)) if v is not None}
    if update:
        settings = settings.model_copy(update=update)
    return settings, settings_server_tls(settings)


@app.command("dev")
def dev(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", metavar="DIR", help="Where to write the files (default: CONVEYOR_HOME/tls)."),
    ] = None,
    host: Annotated[
        list[str],
        typer.Option(
            "--host",
            metavar="HOST",
            help="Another DNS name or IP address the certificate is valid for, besides localhost, "
            "127.0.0.1 and ::1. Repeat for several.",
        ),
    ] = [],  # noqa: B006
    force: Annotated[bool, typer.Option("--force", help="Replace the files if they exist.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the file paths as JSON for scripts.")
    ] = False,
) -> None:
    """Make a local CA and a server certificate it signs (ca.pem, server.pem, server.key) for trying TLS.

    For development only: clients trust the certificate with --ca ca.pem or CONVEYOR_TLS_CA_FILE. The CA's
    private key is not kept, so the CA can sign nothing else; --force makes a new CA and certificate.
    """
    from conveyor.security.dev_ca import make_dev_certificates
    from conveyor.settings import get_settings

    out = make_dev_certificates(directory or get_settings().home / "tls", host, force=force)
    files = {"ca": out.ca_file.absolute(), "cert": out.cert_file.absolute(), "key": out.key_file.absolute()}
    if as_json:
        print_json({**{k: str(v) for k, v in files.items()}, "hosts": list(out.hosts)})
        return
    console.print(f"wrote a dev CA and a server certificate for {', '.join(out.hosts)}:", highlight=False)
    for what, path in (("CA", files["ca"]), ("certificate", files["cert"]), ("key (0600)", files["key"])):
        console.print(f"  {what:<16}{path}", highlight=False, soft_wrap=True)
    console.print("\nServe TLS (conveyor up, serve, server, gateway):", highlight=False)
    console.print(f"  export CONVEYOR_TLS_CERT_FILE={files['cert']}", highlight=False, soft_wrap=True)
    console.print(f"  export CONVEYOR_TLS_KEY_FILE={files['key']}", highlight=False, soft_wrap=True)
    console.print(
        f"  (or --tls-cert {files['cert']} --tls-key {files['key']})", highlight=False, soft_wrap=True
    )
    console.print("Trust it from the CLI and the gateway:", highlight=False)
    console.print(f"  export CONVEYOR_TLS_CA_FILE={files['ca']}", highlight=False, soft_wrap=True)
    console.print(
        f"  (or --ca {files['ca']}; curl --cacert {files['ca']} https://127.0.0.1:8080/v2)",
        highlight=False,
        soft_wrap=True,
    )

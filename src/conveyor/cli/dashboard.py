"""``conveyor dashboard``: the URL of the control plane's web dashboard (``/ui``), a token in its fragment."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from conveyor.cli.client import JsonOpt, UrlOpt, check_url
from conveyor.cli.output import err_console, print_json
from conveyor.settings import get_settings


def dashboard_url(api_url: str, token: str | None) -> str:
    """The dashboard of the control plane at ``api_url``; with ``token`` in the fragment, which the browser
    never sends to a server: the page moves it into the tab's storage and out of the address bar."""
    base = api_url.rstrip("/") + "/ui/"
    return f"{base}#token={quote(token, safe='')}" if token else base


def dashboard(
    url: UrlOpt = None,
    with_token: Annotated[
        bool,
        typer.Option(
            "--token/--no-token",
            help="Put the token the CLI uses (CONVEYOR_TOKEN, else on this machine the local admin token) in "
            "the URL's fragment, so the page opens signed in; without it the page asks for one.",
        ),
    ] = True,
    open_browser: Annotated[bool, typer.Option("--open", help="Also open the URL in a web browser.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the URL of the web dashboard of the control plane (--url, else CONVEYOR_URL).

    The dashboard shows deployments with their replicas and health, live charts of request rate, error rate
    and p50/p99 latency per version, drift, alerts, recent events, and models with their lineage. Anyone
    who has the printed URL has the token in it: share it as you would the token.
    """
    from conveyor.security.credentials import client_token

    settings = get_settings()
    api = check_url(url or settings.url)
    token = client_token(settings, api) if with_token else None
    link = dashboard_url(api, token)
    if as_json:
        print_json({"url": link, "token": token is not None})
    else:
        typer.echo(link)
    if with_token and token is None:
        err_console.print(
            "note: no token for this control plane: the page will ask for one (set CONVEYOR_TOKEN, or "
            "`conveyor tokens create NAME --role viewer`)",
            highlight=False,
            soft_wrap=True,
        )
    if open_browser:
        import webbrowser

        if not webbrowser.open(link):
            err_console.print("note: no web browser found here: open the URL above yourself", highlight=False)

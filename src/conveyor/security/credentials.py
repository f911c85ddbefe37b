"""Which token a client sends, and the admin token a local control plane makes on its first start.

``CONVEYOR_TOKEN`` wins; else, for a control plane or gateway on this machine (a loopback URL), the admin
token the control plane wrote under the home (``admin.token``, mode 0600): the CLI, a gateway started by
`conveyor up` and the demo need no extra step on a laptop, and nothing is sent to another host unasked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from conveyor.errors import ConveyorError, Unauthenticated, disk_full_as_error
from conveyor.security.tokens import Verifier

if TYPE_CHECKING:
    from conveyor.registry import Registry
    from conveyor.settings import Settings

log = logging.getLogger("conveyor.security")
LOCAL_ADMIN = "local-admin"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_token(settings: Settings, url: str | None) -> str | None:
    """The bearer token to send to ``url``: CONVEYOR_TOKEN, else the local admin token for a loopback URL."""
    if settings.token:
        return settings.token.strip()
    if url is None or not is_loopback_host(urlsplit(url).hostname):
        return None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return settings.admin_token_file.read_text().strip() or None
    return None


def stack_token(settings: Settings) -> str | None:
    """The token `conveyor up` gives its own gateway and uses for its own apply: CONVEYOR_TOKEN, else the
    control plane's local admin token, whatever address the stack binds (it is this machine's)."""
    if settings.token:
        return settings.token.strip()
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return settings.admin_token_file.read_text().strip() or None
    return None


def auth_headers(settings: Settings, url: str | None) -> dict[str, str]:
    token = client_token(settings, url)
    return {"authorization": f"Bearer {token}"} if token else {}


def ensure_admin_token(registry: Registry, settings: Settings) -> tuple[Path, bool]:
    """The admin token file, and whether it was made now: on a first start there is none, so a token named
    ``local-admin`` is created and written there (0600). A file whose token no longer works (revoked) is
    left alone, with a warning: removing the file makes a new one at the next start."""
    path = settings.admin_token_file
    if path.exists():
        try:
            Verifier(registry.tokens.records()).authenticate("Bearer " + path.read_text().strip())
        except (Unauthenticated, OSError, UnicodeDecodeError) as exc:
            log.warning(
                "the admin token in %s does not work (%s); remove the file to get a new one", path, exc
            )
        return path, False
    for info in registry.tokens.list():
        if info.name == LOCAL_ADMIN:  # its file was removed: the token is lost with it
            registry.tokens.revoke(info.id, by="control-plane")
    token, _ = registry.tokens.create(LOCAL_ADMIN, "admin", by="control-plane")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with disk_full_as_error(str(path)):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            os.replace(tmp, path)
    except (OSError, ConveyorError):
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path, True

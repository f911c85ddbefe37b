"""A rollout's webhooks (docs/rollouts.md, Webhooks): JSON events posted with retries, and confirmation
gates asked before a step or a promotion (Flagger's confirm-rollout / confirm-promotion hooks are the model).

Events go through the ``Notifier`` queue (bounded, retried with backoff, never blocking the controller).
A gate is one POST with the hook's timeout: a 2xx answer lets the rollout go on, anything else (another
status, no answer) keeps it waiting, and it is asked again at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from conveyor.observe.notify import Notifier

log = logging.getLogger("conveyor.rollouts")
EVENTS = ("start", "step", "promotion", "rollback", "check")
DEFAULT_EVENTS = ("start", "step", "promotion", "rollback")


def payload(
    event: str, deployment: str, rollout: dict[str, Any], message: str, **extra: Any
) -> dict[str, Any]:
    """The JSON body of one webhook call: what happened, to which rollout, and the rollout as stored."""
    return {
        "event": event,
        "deployment": deployment,
        "rollout": rollout.get("number"),
        "phase": rollout.get("phase"),
        "stableModel": rollout.get("stableModel"),
        "candidateModel": rollout.get("candidateModel"),
        "weight": rollout.get("weight"),
        "step": rollout.get("step"),
        "message": message,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **extra,
    }


def event_urls(hooks: Iterable[Any], event: str) -> list[str]:
    """The URLs of the hooks (``RolloutWebhook``) that take ``event`` (gates take none)."""
    out = []
    for hook in hooks:
        if hook.confirm is not None:
            continue
        events = hook.events if hook.events else DEFAULT_EVENTS
        if event in events:
            out.append(str(hook.url))
    return out


def notify(notifier: Notifier, hooks: Iterable[Any], event: str, body: dict[str, Any]) -> None:
    urls = event_urls(hooks, event)
    if urls:
        notifier.send(urls, body)


async def confirmed(client: httpx.AsyncClient, hooks: Iterable[Any], gate: str, body: dict[str, Any]) -> bool:
    """Whether every ``gate`` hook (``confirm: step`` or ``promotion``) answers 2xx; True when there is none.
    All are asked at once; each within its own timeout."""
    gates = [h for h in hooks if h.confirm == gate]
    if not gates:
        return True
    answers = await asyncio.gather(*(_ask(client, h, body) for h in gates))
    return all(answers)


async def _ask(client: httpx.AsyncClient, hook: Any, body: dict[str, Any]) -> bool:
    url = str(hook.url)
    try:
        response = await client.post(url, json=body, timeout=hook.timeout_seconds)
    except httpx.HTTPError as exc:
        log.info("confirmation webhook %s did not answer: %s", url, exc)
        return False
    if 200 <= response.status_code < 300:
        return True
    log.info("confirmation webhook %s answered %d: waiting", url, response.status_code)
    return False

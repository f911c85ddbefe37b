"""Alert notifications reach a real local webhook receiver in Alertmanager's format, are retried after a
500, and a full queue drops (and counts) instead of blocking the evaluation."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from conveyor.observe.alert_state import Alert
from conveyor.observe.notify import ZERO_TIME, Notifier, webhook_payload
from tests.fixtures.webhook import Receiver

FIRING = Alert(
    rule="error-rate",
    deployment="iris",
    version="2",
    severity="critical",
    state="firing",
    value=0.5,
    active_since=1_700_000_000.0,
    fired_at=1_700_000_120.0,
    labels={"alertname": "error-rate", "deployment": "iris", "version": "2", "severity": "critical"},
    annotations={"summary": "0.5 of the requests of version 2 failed"},
)


def test_a_webhook_answering_500_gets_the_notification_again_until_it_takes_it() -> None:
    receiver = Receiver(statuses=[500, 503])
    notifier = Notifier(first_backoff_s=0.05, deadline_s=10)

    async def run() -> bool:
        await notifier.start()
        try:
            notifier.send([receiver.url], webhook_payload(FIRING, "http://127.0.0.1:8000/api/v1/alerts"))
            return await notifier.drain(10)
        finally:
            await notifier.stop()

    try:
        assert asyncio.run(run())
    finally:
        receiver.close()
    assert receiver.attempts == 3 and notifier.delivered == 1 and notifier.failed == 0
    (body,) = receiver.bodies
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "conveyor"
    (alert,) = body["alerts"]
    assert alert["labels"] == FIRING.labels and alert["annotations"] == FIRING.annotations
    assert (alert["startsAt"], alert["endsAt"]) == ("2023-11-14T22:15:20.000Z", ZERO_TIME)
    assert alert["generatorURL"] == "http://127.0.0.1:8000/api/v1/alerts"


def test_a_resolved_notification_has_its_end_and_a_refusing_receiver_is_not_asked_again() -> None:
    receiver = Receiver(statuses=[400])
    notifier = Notifier(first_backoff_s=0.05, deadline_s=10)
    resolved = replace(FIRING, state="resolved", resolved_at=1_700_000_300.0)
    payload = webhook_payload(resolved, "http://cp/api/v1/alerts")
    assert payload["status"] == "resolved" and payload["alerts"][0]["endsAt"] == "2023-11-14T22:18:20.000Z"

    async def run() -> None:
        await notifier.start()
        try:
            notifier.send([receiver.url], payload)
            assert await notifier.drain(10)
        finally:
            await notifier.stop()

    try:
        asyncio.run(run())
    finally:
        receiver.close()
    assert receiver.attempts == 1 and notifier.failed == 1 and receiver.bodies == []


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    async def run() -> Notifier:
        notifier = Notifier(queue_size=2)  # not started: nothing takes from the queue
        for _ in range(5):
            notifier.send(["http://127.0.0.1:9/hook"], webhook_payload(FIRING, "http://cp/api/v1/alerts"))
        return notifier

    assert asyncio.run(run()).dropped == 3

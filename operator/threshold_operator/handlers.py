"""kopf handlers: every trigger runs the same idempotent reconcile pass.

Configuration comes from the environment (the `threshold-operator run` command and the
Helm chart set it): THRESHOLD_OPERATOR_CATALOG, THRESHOLD_OPERATOR_IMAGE,
THRESHOLD_OPERATOR_INTERVAL, THRESHOLD_WORKER_SERVICE_ACCOUNT, THRESHOLD_OPERATOR_LOG_LEVEL,
THRESHOLD_OPERATOR_RETRY_BACKOFF (seconds before the first retry after a transient API error;
doubled each time up to RETRY_CAP, and never sooner than the server's Retry-After).
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from . import metrics
from .api import GROUP, PLURAL, VERSION
from .catalog import load_catalog
from .jobs import Settings
from .kube import Kube, Transient, load_config
from .reconcile import Reconciler

INTERVAL = float(os.environ.get("THRESHOLD_OPERATOR_INTERVAL", "5"))
RETRY_BACKOFF = float(os.environ.get("THRESHOLD_OPERATOR_RETRY_BACKOFF", "1"))
RETRY_CAP = 60.0
RESOURCE = (GROUP, VERSION, PLURAL)
#: kube-apiserver refuses an Event whose message is over 1024 bytes; kopf cuts at 1024
#: characters, which is too late for text that is not ASCII (paths, dataset names).
EVENT_MESSAGE_BYTES = 1024

_reconciler: Reconciler | None = None


def settings_from_env() -> Settings:
    return Settings(
        image=os.environ.get("THRESHOLD_OPERATOR_IMAGE", Settings.image),
        image_pull_policy=os.environ.get(
            "THRESHOLD_OPERATOR_IMAGE_PULL_POLICY", Settings.image_pull_policy
        ),
        worker_service_account=os.environ.get("THRESHOLD_WORKER_SERVICE_ACCOUNT") or None,
        log_level=os.environ.get("THRESHOLD_OPERATOR_WORKER_LOG_LEVEL", Settings.log_level),
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _reconciler
    settings.scanning.disabled = True  # we know our resources; no CRD list/watch permission needed
    settings.posting.level = 20  # INFO and up become Events
    settings.persistence.finalizer = "blockwise.dev/threshold-operator"
    settings.watching.server_timeout = 300
    catalog = load_catalog(os.environ.get("THRESHOLD_OPERATOR_CATALOG") or None)
    _reconciler = Reconciler(Kube(load_config()), catalog, settings_from_env())


def retry_delay(retry: int, retry_after: float | None = None) -> float:
    """Exponential back-off, capped, and never sooner than the server asked."""
    return max(min(RETRY_CAP, RETRY_BACKOFF * 2 ** min(retry, 16)), retry_after or 0.0)


def _reconcile(body: kopf.Body, patch: kopf.Patch, retry: int) -> None:
    assert _reconciler is not None, "startup handler did not run"
    metrics.RECONCILES.inc()
    try:
        outcome = _reconciler.reconcile(_plain(body))
    except Transient as e:  # kopf logs it (and posts it as an Event), then calls us again
        metrics.RECONCILE_ERRORS.inc()
        delay = retry_delay(retry, e.retry_after)
        raise kopf.TemporaryError(
            f"{e}; retrying in {delay:g} s (attempt {retry + 1})", delay=delay
        ) from e
    except Exception:
        metrics.RECONCILE_ERRORS.inc()
        raise
    old = dict(body.get("status") or {})
    for key, value in outcome.status.items():
        if old.get(key) != value:
            patch.status[key] = value
    for kind, reason, message in outcome.events:
        kopf.event(body, type=kind, reason=reason, message=event_message(message))
    metrics.observe(body["metadata"]["namespace"], body["metadata"]["name"], outcome.status)


def event_message(text: str, limit: int = EVENT_MESSAGE_BYTES) -> str:
    """The message cut to `limit` UTF-8 bytes, with an ellipsis where it was cut (the status
    keeps it whole)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len(" …".encode())].decode(errors="ignore") + " …"


def _plain(obj: Any) -> Any:
    if hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def on_change(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    _reconcile(body, patch, retry)


@kopf.timer(*RESOURCE, interval=INTERVAL, sharp=False)
def on_timer(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    _reconcile(body, patch, retry)


@kopf.on.delete(*RESOURCE, optional=True)
def on_delete(name: str, namespace: str, **_: Any) -> None:
    """Only bookkeeping: owner references delete the Jobs and pods; data stays."""
    metrics.forget(namespace, name)

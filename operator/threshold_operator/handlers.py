"""kopf wiring: watch ThresholdJobs and their Jobs, and run one reconcile pass at a time each.

How the operator is driven, and why:

- Level-based. kopf's `on.event` handlers only put a ThresholdJob's key in a work queue
  (`workqueue.Workqueue`); a pass reads the ThresholdJob afresh and derives everything from
  what is there. There is no change-detecting handler (create, update, resume), no timer and
  no daemon: kopf then keeps no diff-base annotation of the spec and no progress, and adds no
  finalizer, so a ThresholdJob of any size the CRD admits can always be written and deleted,
  with the operator running or not. (kopf removes the finalizer that operator versions with a
  timer added, `FINALIZER`, when it next sees such a ThresholdJob.)
- The Jobs (label blockwise.dev/threshold-job) are watched too; an event of a Job queues its
  owner, so each change of a Job's status is followed by a pass. The one timer: while a Job
  has pods that are not ready, or none yet (`reconcile.pods_pending`), its ThresholdJob is
  looked at again every `interval` seconds, since a pod that cannot start (an image that
  cannot be pulled, a pod the API server refuses) changes no Job; and while a ThresholdJob
  waits for another one that writes its output (`outputs`). A ThresholdJob whose pods all
  run, that is suspended or that is finished costs no request until an event.
- A pass that fails on an unexpected error (a bug) is retried with back-off, BUG_ATTEMPTS
  times in a row at most; then the ThresholdJob fails with the error as its message, and
  no pass follows until it changes.
- Serialised. One pass at a time per ThresholdJob, each on what the one before wrote; the
  status is written only if the ThresholdJob is still as the pass read it (resourceVersion).
  Its Events are posted just before, under names made from the transition they tell (a pass
  done over tells it again under the same name: a 409). So each transition is written once
  and told once.
- Settings come from `threshold-operator run` through kopf's memo (`OperatorConfig`), read
  by the startup handler; nothing is read from the environment or kept in module globals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import socket
from collections.abc import Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from . import metrics, outputs
from .api import API_VERSION, FINAL_PHASES, GROUP, KIND, PLURAL, VERSION
from .catalog import PoolSpec, load_catalog
from .jobs import Settings, controller_of
from .kube import Conflict, Kube, Transient, load_config
from .names import LABEL_JOB, child_base
from .reconcile import Outcome, Reconciler, dump
from .status import TIME_FORMAT, Event
from .workqueue import Workqueue

logger = logging.getLogger(__name__)

RETRY_CAP = 60.0
#: Passes in a row that may fail on an unexpected error (a bug) before the ThresholdJob
#: fails with it: a rare race gets a second chance, a bug does not loop forever.
BUG_ATTEMPTS = 3
RESOURCE = (GROUP, VERSION, PLURAL)
#: The finalizer operator versions with a timer added; kopf removes it (nothing needs it now).
FINALIZER = "blockwise.dev/threshold-operator"
COMPONENT = "threshold-operator"
#: kube-apiserver refuses an Event whose message is over 1024 bytes.
EVENT_MESSAGE_BYTES = 1024


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings, from the command line (or the Helm chart's values)."""

    pools: dict[str, PoolSpec] = field(default_factory=lambda: load_catalog(None))
    settings: Settings = field(default_factory=Settings)
    #: Seconds between passes over a ThresholdJob whose Job has pods that are not ready (or
    #: none yet): the only state no watch event tells of.
    interval: float = 5.0
    #: Seconds before the first retry after a transient error; doubled up to RETRY_CAP, and
    #: never sooner than the server's Retry-After.
    retry_backoff: float = 1.0
    #: Passes over different ThresholdJobs at once.
    concurrency: int = 4


def operate(
    config: OperatorConfig | None = None,
    namespaces: Sequence[str] = (),
    *,
    liveness: str | None = None,
    stop_flag: Any = None,
) -> Coroutine[Any, Any, None]:
    """The operator, cluster-wide or in `namespaces`, with `config` in kopf's memo."""
    return kopf.operator(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=True,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config or OperatorConfig()),
        stop_flag=stop_flag,
    )


def retry_delay(retry: int, retry_after: float | None = None, first: float = 1.0) -> float:
    """Exponential back-off, capped, and never sooner than the server asked."""
    return max(min(RETRY_CAP, first * 2 ** min(retry, 16)), retry_after or 0.0)


def event_message(text: str, limit: int = EVENT_MESSAGE_BYTES) -> str:
    """The message cut to `limit` UTF-8 bytes, with an ellipsis where it was cut (the status
    keeps it whole)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len(" …".encode())].decode(errors="ignore") + " …"


def event_object(body: dict[str, Any], event: Event, after: str = "") -> dict[str, Any]:
    """A core/v1 Event about the ThresholdJob. Its name is made from the transition it
    tells (the object, its generation, the phase it leaves, what it says), so that telling
    the same transition again, from a pass done over, is a 409 and not a second Event."""
    meta = body["metadata"]
    when = dt.datetime.now(dt.UTC)
    stamp = when.strftime(TIME_FORMAT)
    identity = "\n".join(
        (meta["uid"], str(meta.get("generation")), after, event.reason, event.message)
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{child_base(meta['name'])}.{digest}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event_message(event.message),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128] or COMPONENT,
        "action": "Reconcile",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


class Passes:
    """Reconcile passes, as the work queue runs them: read, reconcile, write the status if it
    changed, tell the transitions; transient errors are retried with back-off and told."""

    def __init__(self, kube: Kube, reconciler: Reconciler, config: OperatorConfig) -> None:
        self.kube = kube
        self.reconciler = reconciler
        self.config = config
        self.attempts: dict[Hashable, int] = {}

    async def __call__(self, key: Hashable) -> float | None:
        return await asyncio.to_thread(self.run, key)

    def run(self, key: Hashable) -> float | None:
        """One pass; returns when to look again (None: on the next event only)."""
        namespace, name = key  # type: ignore[misc]
        metrics.RECONCILES.inc()
        body: dict[str, Any] | None = None
        try:
            body = self.kube.get_threshold_job(namespace, name)
            if body is None:  # deleted
                self.attempts.pop(key, None)
                metrics.forget(namespace, name)
                return None
            outcome = self.reconciler.reconcile(body)
            self._write(body, outcome)
        except Transient as e:
            return self._again(key, body, e, e.retry_after)
        except Exception as e:  # a bug: told, retried a few times, then the job fails with it
            logger.exception("reconcile pass of %s/%s failed", namespace, name)
            if body is None or self.attempts.get(key, 0) + 1 < BUG_ATTEMPTS:
                return self._again(key, body, e, None)
            return self._give_up(key, body, e)
        self.attempts.pop(key, None)
        metrics.observe(namespace, name, dump(outcome.status))
        if outcome.status.phase in FINAL_PHASES or not outcome.recheck:
            return None
        return self.config.interval

    def _write(self, body: dict[str, Any], outcome: Outcome) -> None:
        """Tell the transitions, then write the status if it changed (only if the
        ThresholdJob is still as the pass read it)."""
        meta = body["metadata"]
        after = outcome.old.phase if outcome.old is not None else ""
        for event in outcome.events:  # first, so that `kubectl describe` has it with the phase
            self._post(body, event, after)
        if outcome.changed:
            status = dump(outcome.status)
            self.kube.patch_status(meta["namespace"], meta["name"], meta["resourceVersion"], status)

    def _give_up(self, key: Hashable, body: dict[str, Any], error: Exception) -> float | None:
        """Fail the ThresholdJob with the error, once: no more passes until it changes."""
        metrics.RECONCILE_ERRORS.inc()
        self.attempts.pop(key, None)
        message = (
            f"the operator failed on this ThresholdJob {BUG_ATTEMPTS} times in a row "
            f"({type(error).__name__}: {error}); see the operator's log"
        )
        try:
            self._write(body, self.reconciler.give_up(body, message))
        except Transient as e:  # the status could not be written yet: try that again
            return self._again(key, body, e, e.retry_after)
        except Exception:
            logger.exception("could not fail %s/%s with its error", *key)  # type: ignore[misc]
        return None

    def _again(
        self, key: Hashable, body: dict[str, Any] | None, error: Exception, after: float | None
    ) -> float:
        metrics.RECONCILE_ERRORS.inc()
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        delay = retry_delay(attempt - 1, after, self.config.retry_backoff)
        text = f"{error}; retrying in {delay:g} s (attempt {attempt})"
        if isinstance(error, Conflict):  # the object moved on: look again, quietly
            logger.info(text)
            return delay
        logger.warning(text)
        if body is not None:
            self._post(body, Event("Warning", "Retrying", text), str(attempt))
        return delay

    def _post(self, body: dict[str, Any], event: Event, after: str) -> None:
        """Events are told as well as the API server allows: a failure to post one is
        logged, never a reason to redo the pass."""
        try:
            event_body = event_object(body, event, after)
            self.kube.create_event(body["metadata"]["namespace"], event_body)
        except Exception as e:  # ApiRejected or Transient alike
            logger.warning("could not post Event %s: %s", event.reason, e)


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf as this operator uses it: watches only, no bookkeeping in the objects."""
    settings.scanning.disabled = True  # we know our resources; no CRD list/watch permission
    settings.posting.enabled = False  # Events are the passes' (one per transition)
    settings.persistence.finalizer = FINALIZER  # never added; removed where older versions left it
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    settings.watching.server_timeout = 300


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    kube = Kube(load_config())
    memo.outputs = outputs.Registry()
    reconciler = Reconciler(kube, config.pools, config.settings, memo.outputs)
    passes = Passes(kube, reconciler, config)
    memo.queue = Workqueue(passes, config.concurrency)
    memo.queue.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if "queue" in memo:
        await memo.queue.stop()


@kopf.index(*RESOURCE)
def output_writers(body: kopf.Body, **_: Any) -> dict[outputs.Storage, outputs.Writer]:
    """Where each ThresholdJob writes, and how far it is (outputs.py). kopf fills the index
    from its first listing before any other handler runs, so that no pass starts a
    ThresholdJob without knowing of the others."""
    return outputs.index_entries(body)


@kopf.on.event(*RESOURCE)
async def threshold_job_event(
    type: str | None,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    output_writers: kopf.Index[outputs.Storage, outputs.Writer],
    **_: Any,
) -> None:
    """Any event of a ThresholdJob (the listing at start too) queues a pass over it."""
    memo.outputs.attach(output_writers)
    key = (namespace, name)
    if type == "DELETED":
        memo.queue.forget(key)
        metrics.forget(namespace, name)
    else:
        memo.queue.add(key)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_JOB: kopf.PRESENT})
async def job_event(
    body: kopf.Body,
    namespace: str,
    memo: kopf.Memo,
    output_writers: kopf.Index[outputs.Storage, outputs.Writer],
    **_: Any,
) -> None:
    """An event of one of our Jobs queues a pass over the ThresholdJob that owns it."""
    memo.outputs.attach(output_writers)  # whichever handler queues the first pass
    ref = controller_of(body)
    if ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
        memo.queue.add((namespace, ref["name"]))

"""The operator tier's cluster: an emulated kube-apiserver on a real port, with the chart's
RBAC, two identities, admission plugs, fault injection and garbage collection.

`EmulatedCluster` runs `k8s_emulator.Emulator` (kmock, over HTTP) in its own thread and event
loop. Requests are authenticated by bearer token as one of two users:

- `operator`: the ServiceAccount the Helm chart renders for the operator
  (`system:serviceaccount:threshold-system:tops-threshold-operator`), authorized by the
  chart's own RBAC manifests rendered with Helm (cluster-wide: ClusterRole and
  ClusterRoleBinding; with `watch_namespaces`: a Role and RoleBinding per namespace);
- `admin`: a cluster admin (group system:masters), for tests and the Job simulator.

`kubeconfig(path, user=...)` writes a kubeconfig for either. `inject(...)` makes the next
requests fail (`k8s_emulator.Fault`); `calls` lists every request with its user and answer.
Admission plugs (`k8s_emulator.Admission`) are given per resource key; DEFAULT_ADMISSION is
what every cluster gets unless a test passes its own: kube-apiserver's defaulting and
validation of Jobs, Pods and Events (kube_validation, whose docstring tables the rules and
the upstream functions they follow) and apiextensions' admission of ThresholdJobs from the
committed CRD (crd_admission: raw JSON decoding, pruning, defaults, schema, CEL rules).

See k8s_emulator for what the server emulates and what it does not, and job_simulator for
the Job controller that runs the real worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kmock

import kube_status
import kube_validation
from crd_admission import CustomResourceAdmission
from helm_chart import by_kind, render
from job_simulator import JobSimulator, intervals
from k8s_emulator import RESOURCES, Admission, AdmissionRequest, Call, Emulator, Fault
from rbac_authz import Authorizer, User, service_account

__all__ = [
    "DEFAULT_ADMISSION",
    "TEST_CONFIG",
    "EmulatedCluster",
    "JobSimulator",
    "create_threshold_job",
    "intervals",
    "operator_env",
    "running_operator",
    "wait_for",
]

ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))
CRD_FILE = Path(__file__).parent.parent / "crds" / "thresholdjobs.blockwise.dev.yaml"
PATCHES = ("application/merge-patch+json", "application/json-patch+json")


def built_in(resource: str, kind: str, group: str) -> Admission:
    """kube-apiserver's defaulting and validation of a built-in kind (kube_validation)."""

    def admit(request: AdmissionRequest) -> dict[str, Any]:
        old, sub = request.old_object, request.subresource or None
        if old is None:
            obj = kube_validation.prepare_create(resource, request.object)
            causes = kube_validation.validate_create(resource, obj)
        else:
            obj = kube_validation.prepare_update(resource, request.object, old, sub)
            causes = kube_validation.validate_update(resource, obj, old, sub)
        if causes:
            raise kube_status.invalid(kind, group, request.name, causes)
        return obj

    return admit


def custom_resource(admission: CustomResourceAdmission) -> Admission:
    """apiextensions-apiserver's admission of a custom resource from its CRD (crd_admission):
    the raw body is decoded as kube's JSON decoder does, then pruned, defaulted, validated."""

    def admit(request: AdmissionRequest) -> dict[str, Any]:
        admission.decode(request.body, patch=request.content_type in PATCHES)
        if request.old_object is None:
            return admission.create(request.object, request.namespace)
        return admission.update(
            request.object, request.old_object, request.subresource or None, request.namespace
        )

    return admit


#: Admission plugs every EmulatedCluster applies unless told otherwise (resource key -> plugs):
#: kube-apiserver's validation of what the operator, kopf and the Job simulator write.
DEFAULT_ADMISSION: dict[str, list[Admission]] = {
    "batch/v1/jobs": [built_in("jobs", "Job", "batch")],
    "v1/pods": [built_in("pods", "Pod", "")],
    "v1/events": [built_in("events", "Event", "")],
    "blockwise.dev/v1alpha1/thresholdjobs": [
        custom_resource(CustomResourceAdmission.from_file(CRD_FILE))
    ],
}


@functools.cache
def chart_rbac(watch_namespaces: tuple[str, ...] = ()) -> tuple[User, Authorizer]:
    """The operator's user and an authorizer with the chart's RBAC for these values."""
    docs = render({"watchNamespaces": list(watch_namespaces)})
    (deployment,) = by_kind(docs, "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    user = service_account(deployment["metadata"]["namespace"], account)
    return user, Authorizer.from_manifests(docs)


class EmulatedCluster:
    """The emulated API server on a real port, in its own thread and event loop."""

    def __init__(
        self,
        watch_namespaces: Sequence[str] = (),
        namespaces: Sequence[str] = ("default",),
        admission: Mapping[str, Admission | Sequence[Admission]] | None = None,
    ) -> None:
        self.operator_user, authorizer = chart_rbac(tuple(watch_namespaces))
        self._tokens = {"operator": secrets.token_hex(16), "admin": secrets.token_hex(16)}
        plugs = DEFAULT_ADMISSION if admission is None else admission
        self.emulator = Emulator(
            strict=False,
            users={
                self._tokens["operator"]: self.operator_user,
                self._tokens["admin"]: ADMIN,
            },
            authorizer=authorizer,
            admission={k: [v] if callable(v) else list(v) for k, v in plugs.items()},
        )
        self.namespaces = list(namespaces)
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kmock")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator as emulator, kmock.Server(emulator) as server:
            for key, info in RESOURCES.items():
                emulator.resources[key] = info
            for namespace in self.namespaces:
                emulator.objects["v1/namespaces", None, namespace] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "uid": f"ns-{namespace}"},
                }
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def calls(self) -> list[Call]:
        return list(self.emulator.calls)

    def inject(
        self,
        verb: str,
        resource: str,
        answer: int | str | kube_status.StatusError,
        times: int | None = 1,
        retry_after: int = 1,
    ) -> Fault:
        """The next `times` requests (verb, resource) answer `answer` (see k8s_emulator.Fault)."""
        fault = Fault(verb, resource, answer, times, retry_after)

        async def add() -> None:
            self.emulator.faults.append(fault)

        asyncio.run_coroutine_threadsafe(add(), self._loop).result(10)
        return fault

    def kubeconfig(self, path: Path, *, user: str) -> Path:
        """A kubeconfig for `operator` (the chart's ServiceAccount) or `admin`."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emu",
                    "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
                    "users": [{"name": user, "user": {"token": self._tokens[user]}}],
                    "contexts": [
                        {
                            "name": "emu",
                            "context": {"cluster": "emu", "user": user, "namespace": "default"},
                        }
                    ],
                }
            )
        )
        return path


@contextlib.contextmanager
def operator_env(kubeconfig: Path, **env: str) -> Iterator[None]:
    """KUBECONFIG and operator settings for kopf and the kubernetes client."""
    from kubernetes.config import kube_config

    values = {"KUBECONFIG": str(kubeconfig), **env}
    old = {k: os.environ.get(k) for k in values}
    old_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    os.environ.update(values)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
    try:
        yield
    finally:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _test_config() -> Any:
    from threshold_operator.handlers import OperatorConfig

    return OperatorConfig(interval=0.2, retry_backoff=0.05)


#: The operator's settings in these tests: quick passes and quick retries.
TEST_CONFIG = _test_config()


def _tasks(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> str:
    """Where the thread of a loop that would not stop is, and where each of its tasks is
    waiting (read from another thread: a diagnosis, not a synchronised view)."""
    frame = sys._current_frames().get(thread.ident or -1)
    stack = "".join(traceback.format_stack(frame, limit=8)) if frame else "(gone)\n"
    out = []
    for task in list(asyncio.all_tasks(loop)):
        frames = task.get_stack(limit=3)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames)
        out.append(f"{task.get_name()}: {where}")
    return f"thread, innermost last:\n{stack}tasks:\n" + "\n".join(sorted(out))


@contextlib.contextmanager
def running_operator(config: Any = None, namespaces: Sequence[str] = ()) -> Iterator[None]:
    """The operator as `threshold-operator run` runs it (`handlers.operate`, settings in
    kopf's memo), in a thread with its own event loop; stopped at the end, and whatever it
    raised is raised here. KUBECONFIG must name the operator's identity (`operator_env`)."""
    from threshold_operator.handlers import operate

    stop = threading.Event()
    raised: list[BaseException] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(operate(config or TEST_CONFIG, namespaces, stop_flag=stop))
        except BaseException as e:  # surfaced in the test's thread
            raised.append(e)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, daemon=True, name="operator")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
    if thread.is_alive():
        raise RuntimeError(f"the operator did not stop:\n{_tasks(loops[0], thread)}")
    if raised:
        raise raised[0]


def create_threshold_job(
    api: Any, name: str, spec: dict[str, Any], namespace: str = "default"
) -> dict[str, Any]:
    """POST a ThresholdJob through the kubernetes client, as kubectl apply would."""
    from kubernetes import client

    from threshold_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION

    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")

"""The `restricted` Pod Security Standard, as checks on a pod spec."""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUMES = {
    "emptyDir",
    "persistentVolumeClaim",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "ephemeral",
    "csi",
}


def assert_restricted(pod: dict[str, Any]) -> None:
    psc = pod.get("securityContext") or {}
    assert psc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), (
        "seccompProfile"
    )
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), (
        "host namespaces"
    )
    for vol in pod.get("volumes", []):
        assert set(vol) - {"name"} <= ALLOWED_VOLUMES, f"volume type {vol}"
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: allowPrivilegeEscalation"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: drop ALL"
        assert set(sc.get("capabilities", {}).get("add") or []) <= {"NET_BIND_SERVICE"}
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{c['name']}: runAsNonRoot"
        assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{c['name']}: runAsUser 0"
        assert not sc.get("privileged"), f"{c['name']}: privileged"
        assert not any(p.get("hostPort") for p in c.get("ports", [])), "hostPort"

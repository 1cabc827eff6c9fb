"""A stand-in for kube-apiserver's Job validation, limited to names and labels.

Until the full validator (kube_validation) is plugged into the test server, this one checks
what a ThresholdJob's name decides, following upstream:

| rule | upstream (kubernetes/kubernetes) |
| --- | --- |
| Job name: DNS-1123 subdomain | ValidateObjectMeta with NameIsDNSSubdomain |
| Indexed Job: `<name>-<completions-1>` a DNS-1123 label | pkg/apis/batch/validation ValidateJob |
| label values of the Job and its pod template (Jobs label pods with their name, so at most 63 characters) | apimachinery validation IsValidLabelValue, ValidateGeneratedSelector |
"""

from __future__ import annotations

import re
from typing import Any

import kube_status as ks
from k8s_emulator import AdmissionRequest

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(DNS_LABEL, value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and re.fullmatch(rf"{DNS_LABEL}(\.{DNS_LABEL})*", value) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and LABEL_VALUE.fullmatch(value) is not None


def job_name_errors(job: dict[str, Any]) -> list[dict[str, str]]:
    """The causes kube-apiserver would give for this Job's name and labels."""
    name = job["metadata"]["name"]
    spec = job.get("spec") or {}
    causes = []
    if not is_dns1123_subdomain(name):
        causes.append(
            ks.cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    if spec.get("completionMode") == "Indexed" and spec.get("completions"):
        hostname = f"{name}-{spec['completions'] - 1}"
        if not is_dns1123_label(hostname):
            causes.append(
                ks.cause(
                    "metadata.name",
                    f'Invalid value: "{name}": will not able to create pod with invalid DNS '
                    f"label: {hostname}",
                )
            )
    template = (spec.get("template") or {}).get("metadata") or {}
    for path, labels in (
        ("metadata.labels", job["metadata"].get("labels") or {}),
        ("spec.template.metadata.labels", {**(template.get("labels") or {}), "job-name": name}),
    ):
        for value in labels.values():
            if not is_label_value(str(value)):
                causes.append(
                    ks.cause(
                        path,
                        f'Invalid value: "{value}": must be no more than 63 characters'
                        if len(str(value)) > 63
                        else f'Invalid value: "{value}": a valid label must be an empty string '
                        "or consist of alphanumeric characters, '-', '_' or '.', and must start "
                        "and end with an alphanumeric character",
                    )
                )
    return causes


def admit_job_names(request: AdmissionRequest) -> None:
    """Admission plug for batch/v1/jobs: refuse (422) what job_name_errors finds."""
    causes = job_name_errors(request.object)
    if causes:
        raise ks.invalid("Job", "batch", request.name, causes)

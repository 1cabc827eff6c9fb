"""Names and labels of a ThresholdJob's children, valid for every name the CRD admits.

A ThresholdJob's name is a DNS-1123 subdomain of up to 253 characters, dots allowed. What
kube-apiserver requires of its children is stricter:

- a Job's name is at most 63 characters (its pods carry it as a label value);
- an Indexed Job's pods are named `<job>-<index>`, so `<job>-<completions-1>` must be a
  DNS-1123 label (no dots, at most 63 characters) for the largest index the plan allows;
- a label value is at most 63 characters.

Short names without dots are kept as they are (`tj1` -> `tj1-work`). Any other name is cut
and gets a hash of the whole name, so distinct names never share children (`a.b` ->
`a-b-<hash>-work`, `a-b` -> `a-b-work`). The full name is always in an annotation, and the
label `blockwise.dev/threshold-job` (the name, or its derived value) selects a ThresholdJob's
Jobs and pods; `status.selector` holds the selector to copy.
"""

from __future__ import annotations

import hashlib
import re

from threshold_worker.params import MAX_PARTITIONS

from .api import DNS_LABEL

LABEL_JOB = "blockwise.dev/threshold-job"
ANNOTATION_NAME = "blockwise.dev/threshold-job-name"
ROLES = ("prepare", "work")
MAX_LABEL = 63
HASH_CHARS = 8
#: The most partitions (Indexed Job completions) a plan may have: the bound on spec.partitions.
MAX_COMPLETIONS = MAX_PARTITIONS
#: Room for the largest completion index: "-99999" for 10^5 partitions.
INDEX_SUFFIX = len(f"-{MAX_COMPLETIONS - 1}")
#: Longest base so that `<base>-<role>-<index>` fits in a DNS label for every role.
MAX_BASE = MAX_LABEL - INDEX_SUFFIX - max(len(f"-{role}") for role in ROLES)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:HASH_CHARS]


def _shortened(text: str, limit: int, name: str) -> str:
    """`text` cut to leave room for `-<hash of name>`, with the hash appended."""
    stem = text[: limit - HASH_CHARS - 1].rstrip("-.")
    return f"{stem}-{_digest(name)}"


def child_base(name: str) -> str:
    """A DNS-1123 label of at most MAX_BASE characters, unique per ThresholdJob name."""
    if len(name) <= MAX_BASE and re.fullmatch(DNS_LABEL, name):
        return name
    return _shortened(re.sub(r"[^a-z0-9-]", "-", name.lower()), MAX_BASE, name)


def job_name(name: str, role: str) -> str:
    """The prepare or work Job of ThresholdJob `name`."""
    return f"{child_base(name)}-{role}"


#: Work Jobs a ThresholdJob may have (a first and its retries): `-work-99` is as long as
#: `-prepare`, so MAX_BASE, and with it every existing child name, stays as it was.
MAX_ATTEMPTS = 99


def work_job_name(name: str, attempt: int) -> str:
    """The work Job of attempt `attempt`: `<base>-work`, then `<base>-work-2`, ..."""
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise ValueError(f"attempt {attempt} is outside 1..{MAX_ATTEMPTS}")
    first = job_name(name, "work")
    return first if attempt == 1 else f"{first}-{attempt}"


def label_value(name: str) -> str:
    """The value of LABEL_JOB: the name when it fits in a label value, else a derived one."""
    return name if len(name) <= MAX_LABEL else _shortened(name, MAX_LABEL, name)


def selector(name: str) -> str:
    """The label selector of a ThresholdJob's Jobs and pods (`kubectl get jobs -l ...`)."""
    return f"{LABEL_JOB}={label_value(name)}"

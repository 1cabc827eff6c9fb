"""The environment variables a worker process reads that are not the user's to set.

Kubernetes' Job controller gives each pod of an Indexed Job its partition in
JOB_COMPLETION_INDEX, but only when the pod template does not set that variable already
(pkg/controller/job/indexed_job_utils.go, addCompletionIndexEnvVariable): a user's value
would make every pod run the same partition. The worker's own settings are THRESHOLD_*
variables (log level, retry delays, lease TTL, options file, tracebacks); the operator sets
those it needs. A ThresholdJob's `env` may set neither (threshold_operator.api refuses them).
"""

from __future__ import annotations

#: The pod's partition in an Indexed Job (`start-worker --partition`).
PARTITION_INDEX = "JOB_COMPLETION_INDEX"
#: Prefix of every variable the worker reads for its own settings.
SETTINGS_PREFIX = "THRESHOLD_"


def reserved(name: str) -> bool:
    """Whether a pod's environment variable of this name is the platform's, not the user's."""
    return name == PARTITION_INDEX or name.startswith(SETTINGS_PREFIX)

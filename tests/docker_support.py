"""Docker for the docker tier: find an engine, make a base image, build ours.

No registry is reachable from CI, so when the Dockerfile's default base cannot be used the
base is built locally: a minimal Debian bookworm from debootstrap (Debian's own mirror is
reachable), trusting the host's extra CA certificates at build time only (pip inside the
build goes through a TLS-intercepting proxy the host trusts; nothing is committed).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
BASE_TAG = "threshold-operator-base:bookworm"
IMAGE_TAG = "threshold-operator:test"
DEFAULT_BASE = "python:3.12-slim"


def docker_available() -> str | None:
    """None if an engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return (
        None if proc.returncode == 0 else f"no Docker engine answers: {proc.stderr.strip()[:200]}"
    )


def _has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _run(cmd: list[str], **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


def base_image() -> str:
    """The Dockerfile's default base if present, else a local Debian base (made once)."""
    if _has_image(DEFAULT_BASE):
        return DEFAULT_BASE
    if _has_image(BASE_TAG):
        return BASE_TAG
    try:  # where a registry answers (a developer's machine), the official base will do
        pulled = subprocess.run(["docker", "pull", DEFAULT_BASE], capture_output=True, timeout=300)
        if pulled.returncode == 0:
            return DEFAULT_BASE
    except subprocess.TimeoutExpired:
        pass
    if shutil.which("debootstrap") is None:
        raise RuntimeError(
            "cannot pull a base image and debootstrap is missing: apt-get install debootstrap"
        )
    with tempfile.TemporaryDirectory(prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python3-pip,ca-certificates",
                "bookworm",
                str(rootfs),
            ],
            timeout=900,
        )
        extra = glob.glob("/usr/local/share/ca-certificates/*.crt")
        if extra:
            target = rootfs / "usr/local/share/ca-certificates"
            target.mkdir(parents=True, exist_ok=True)
            for crt in extra:
                shutil.copy(crt, target)
            _run(["chroot", str(rootfs), "update-ca-certificates"], timeout=120)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        proc = subprocess.run(
            [
                "docker",
                "import",
                "-c",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "-",
                BASE_TAG,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tar.wait()
        if proc.returncode:
            raise RuntimeError(f"docker import failed: {proc.stderr}")
    return BASE_TAG


def build_image(tag: str = IMAGE_TAG) -> str:
    """Build the project's Dockerfile (classic builder: no buildx here)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    _run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={base_image()}", "-t", tag, str(ROOT)],
        env=env,
        timeout=1500,
    )
    return tag


if __name__ == "__main__":
    print(build_image())

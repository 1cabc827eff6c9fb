"""`make bench-s3`: the worker on an S3 server (moto on 127.0.0.1) against the plain
transfer floor: concurrent GETs of every input chunk and PUTs of the same number of output
bytes, with no decoding at all. Requests in flight decide throughput there, not CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "worker"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _plain(fs, keys: list[str], out_prefix: str, sizes: list[int], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(key: str, size: int, i: int) -> None:
        async with sem:
            await fs._cat_file(key)
            await fs._pipe_file(f"{out_prefix}/{i}", b"\0" * size)

    await asyncio.gather(*(one(k, s, i) for i, (k, s) in enumerate(zip(keys, sizes, strict=True))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    import boto3
    import s3fs

    from threshold_worker.local import run_local
    from threshold_worker.params import JobParameters
    from threshold_worker.sample import make_sample

    boto3.client("s3").create_bucket(Bucket="bench")
    url = "s3://bench/vol.zarr"
    print(f"writing a {args.size}^3 float32 volume to {url} ...", flush=True)
    make_sample(url, "raw", (args.size,) * 3, (64, 64, 64), (8, 4, 4))
    fs = s3fs.S3FileSystem(asynchronous=False)
    keys = [k for k in fs.find("bench/vol.zarr/raw/c")]
    nbytes = args.size**3 * 4
    spec = JobParameters(
        input_container=url,
        input_dataset="raw",
        output_container=url,
        output_dataset="mask",
        threshold=0.5,
    )
    run_local(spec, workers=2, progress=False)  # warm-up, and the output sizes for the floor
    out_sizes = {k.rsplit("/c/", 1)[-1]: fs.size(k) for k in fs.find("bench/vol.zarr/mask/c")}
    sizes = [out_sizes.get(k.rsplit("/c/", 1)[-1], 0) for k in keys]
    ours, plain = [], []
    for _ in range(args.repeats):
        fs.rm("bench/vol.zarr/mask", recursive=True)  # not timed: the floor deletes nothing either
        fs.invalidate_cache()
        start = time.perf_counter()
        run_local(spec, workers=2, progress=False)
        ours.append(time.perf_counter() - start)

        async def floor() -> None:
            afs = s3fs.S3FileSystem(asynchronous=True, skip_instance_cache=True)
            session = await afs.set_session()
            await _plain(afs, keys, "bench/plain", sizes, args.concurrency)
            await session.close()

        start = time.perf_counter()
        asyncio.run(floor())
        plain.append(time.perf_counter() - start)
    server.stop()
    a, b = statistics.median(ours), statistics.median(plain)
    print()
    print(
        f"S3 (moto on 127.0.0.1), {args.size}^3 float32, {len(keys)} chunks, median of {args.repeats}:"
    )
    print("| method | s | input MB/s |")
    print("| --- | ---: | ---: |")
    print(f"| threshold-worker run, 2 processes | {a:.2f} | {nbytes / a / 1e6:.0f} |")
    print(
        f"| plain concurrent GET + PUT of the same bytes ({args.concurrency} in flight) | {b:.2f} | "
        f"{nbytes / b / 1e6:.0f} |"
    )
    print(f"\nThis worker reaches {b / a:.2f}x the plain transfer rate.")


if __name__ == "__main__":
    main()

"""Snapshots on S3-compatible storage against plain object transfers, in one run.

A `paramstore serve --data-dir s3://...` process and the baselines talk to the same moto server
(a separate process on loopback): a snapshot of a `--size-mib` store against one plain
`PutObject` of the same safetensors bytes, and a restore against one plain `GetObject`, with
boto3 (the server's client) and, for comparison, obstore. Ratios are baseline time / paramstore
time, best of `--repeat` alternating rounds.

    python bench/s3.py [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import boto3
import numpy as np
import safetensors.numpy

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "service"))
from s3_server import moto_server  # noqa: E402
from service import TENSORS, best  # noqa: E402

from paramstore.client import connect  # noqa: E402
from paramstore.server.process import start_serve  # noqa: E402


def obstore_baseline(endpoint: str, bucket: str, data: bytes, repeat: int) -> tuple[float, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, endpoint=endpoint, region=os.environ["AWS_REGION"],
                    access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                    secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                    client_options={"allow_http": True})
    put, get = best(repeat, lambda: obstore.put(store, "plain-obstore", data),
                    lambda: obstore.get(store, "plain-obstore").bytes())
    return put, get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_tensor = args.size_mib * (1 << 20) // TENSORS // 4
    tensors = {f"layer{index}_weight": rng.random(per_tensor, dtype=np.float32)
               for index in range(TENSORS)}
    data = safetensors.numpy.save(tensors)
    mib = len(data) / (1 << 20)
    with moto_server() as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=bucket)
        server, address = start_serve(f"s3://{bucket}/data", "--s3-endpoint", endpoint)
        try:
            with connect(address, progress=False) as client:
                store = client.create_store("bench")
                store.push(tensors)
                ids: list[str] = []
                snapshot, put = best(
                    args.repeat, lambda: ids.append(store.snapshot().id),
                    lambda: s3.put_object(Bucket=bucket, Key="plain", Body=data))
                restore, get = best(
                    args.repeat, lambda: store.restore(ids[-1]),
                    lambda: s3.get_object(Bucket=bucket, Key="plain")["Body"].read())
            obstore_put, obstore_get = obstore_baseline(endpoint, bucket, data, args.repeat)
        finally:
            server.kill()
            server.wait()
    print(f"{mib:.0f} MiB in {TENSORS} tensors on moto; best of {args.repeat}")
    for label, ours, plain, baseline in [
            ("snapshot", snapshot, put, "boto3 PutObject"),
            ("restore", restore, get, "boto3 GetObject")]:
        print(f"{label:<9} paramstore {mib / ours:6.0f} MiB/s ({ours * 1000:5.0f} ms)   "
              f"{baseline:<16} {mib / plain:6.0f} MiB/s ({plain * 1000:5.0f} ms)   "
              f"ratio {plain / ours:.2f}")
    print(f"obstore   PutObject {mib / obstore_put:6.0f} MiB/s ({obstore_put * 1000:5.0f} ms)   "
          f"GetObject {mib / obstore_get:6.0f} MiB/s ({obstore_get * 1000:5.0f} ms)")


if __name__ == "__main__":
    main()

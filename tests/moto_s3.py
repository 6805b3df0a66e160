"""moto's S3 *server* on 127.0.0.1 (an OS-assigned port), with test credentials in the env."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest

REGION = "us-east-1"


@contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """Yield the endpoint URL of a fresh server holding `buckets`; stop it afterwards."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
            yield endpoint
        finally:
            server.stop()

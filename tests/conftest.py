"""Shared fixtures: a real moto server on 127.0.0.1 and small archives in the AWSLogs layout."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest

from tests.archive import DirArchive

_counter = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server(env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """A moto server process on a free loopback port, once it answers: (process, base URL)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """The rule-analysis cache (pipeline/detect/shape_cache.py) of the test run, not the user's."""
    os.environ["SOCLAKE_CACHE_DIR"] = str(tmp_path_factory.mktemp("soclake-cache"))
    yield


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on loopback in its own process (real HTTP, real pagination), one per test worker.

    Its own process, so the server does not compete with the code under test for the GIL.
    """
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    proc, url = start_moto_server()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    """A fresh, empty bucket per test (tests share the server, never a bucket)."""
    name = f"logs-{os.getpid()}-{next(_counter)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws_settings(moto_endpoint):
    from pipeline import aws

    settings = aws.AwsSettings(region="us-east-1", endpoint_url=moto_endpoint)
    aws.configure(settings)
    yield settings
    aws.configure(aws.AwsSettings())


@pytest.fixture
def archive(tmp_path) -> DirArchive:
    return DirArchive(tmp_path / "logs")




@pytest.fixture(params=["local", "s3"])
def lake_store(request, tmp_path):
    """The same test on a local lake and on an S3 lake (the moto server)."""
    from pipeline import aws
    from pipeline.lake import LocalStore, S3Store

    if request.param == "local":
        return LocalStore(tmp_path / "lake")
    settings = request.getfixturevalue("aws_settings")
    bucket = request.getfixturevalue("bucket")
    return S3Store(aws.s3_client(settings), f"s3://{bucket}/lake")

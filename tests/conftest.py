"""Shared fixtures: a real moto server on 127.0.0.1 and small archives in the AWSLogs layout."""

from __future__ import annotations

import itertools
import os

import boto3
import pytest

from tests.archive import DirArchive

_counter = itertools.count()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on loopback (real HTTP, real pagination), one per test process."""
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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



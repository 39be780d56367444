"""Test servers on 127.0.0.1: a moto S3 server as users' environments would point at one."""

import os
from contextlib import contextmanager

#: The bucket :func:`s3_server` creates.
BUCKET = "ntk-dist-test"


@contextmanager
def s3_server():
    """A moto S3 server on a free port of 127.0.0.1, the standard AWS variables pointing
    at it (as a user's environment would), and one empty bucket; yields the endpoint."""
    from moto.server import ThreadedMotoServer
    from pyarrow import fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs.S3FileSystem(
        endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True
    ).create_dir(BUCKET)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()

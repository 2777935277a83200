"""Process tuning for bulk parsing (pipeline/tuning.py), checked in a fresh interpreter: it changes process-wide state."""

import os
import subprocess
import sys

import pyarrow as pa

PROBE = """
import pyarrow as pa
from pipeline.tuning import tune_malloc
before = pa.default_memory_pool().backend_name
print(tune_malloc(), before, pa.default_memory_pool().backend_name)
"""


def _has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


def test_tune_malloc_moves_arrow_to_jemalloc_and_sets_glibc_thresholds():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    applied, before, after = out
    if sys.platform.startswith("linux"):
        assert applied == "True"  # mallopt accepted both thresholds
    assert after == ("jemalloc" if _has_jemalloc() else before)


OPENBLAS_PROBE = """
import contextlib, io, os
from pipeline.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["--version"])
print(os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def _openblas_threads_seen(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", OPENBLAS_PROBE], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_the_command_keeps_openblas_to_one_thread_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _openblas_threads_seen(env) == "1"
    assert _openblas_threads_seen({**env, "OPENBLAS_NUM_THREADS": "4"}) == "4"

"""What every command shares: exit codes, flag value checks and the lake check (Click glue: pipeline.cli.options).

Exit codes (README.md lists them): 0 ok; 1 error (one line ``Error: …`` naming the object or flag
and the fix; ``--debug`` adds the traceback); 2 finished, but some objects were quarantined or
unreadable, a rule failed, or alerts were left pending or parked; 64 usage error (EX_USAGE: an
unknown command or option, a bad flag value, flags that contradict each other); 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from pipeline.errors import ConfigError, LakeError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 64, 130

NO_LAKE = "no lake: pass --lake PATH|s3://bucket/prefix or set SOCLAKE_LAKE"


def positive_int(s: str) -> int:
    """A flag value: 1, 2, 3, … (raises ValueError with the reason)."""
    try:
        n = int(s)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{s!r} is not a positive whole number (1 or more)")
    return n


def non_negative_int(s: str) -> int:
    """A flag value: 0 (for some flags: the default, e.g. one per core) or a positive whole number."""
    try:
        n = int(s)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"{s!r} is not 0 or a positive whole number")
    return n


def require_lake(lake: str | None, *, create: bool = False, write: bool = False) -> str:
    """Check ``--lake`` before a command spends time on it; returns it unchanged.

    Commands that read a lake need it to exist (a typo would otherwise look like an empty lake and
    exit 0); ``create`` (ingest, run, backfill) accepts a folder that does not exist yet. A path
    that is a file, or a folder soclake cannot write to when ``write``/``create``, is an error.
    """
    if not lake:
        raise ConfigError(NO_LAKE)
    if lake.startswith("s3://"):
        if not create:
            _require_s3_lake(lake)
        return lake
    path = Path(lake)
    if path.exists() and not path.is_dir():
        raise LakeError(f"lake {lake} is a file, not a folder: pass the lake's folder with --lake")
    if not path.exists():
        if not create:
            raise LakeError(f"no lake at {lake}: the folder does not exist (check --lake or SOCLAKE_LAKE; "
                            "soclake ingest creates a lake)")
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise LakeError(f"cannot create the lake {lake}: {parent} is a file, not a folder")
        _require_writable(lake, parent)
    elif write or create:
        _require_writable(lake, path)
    return lake


def _require_writable(lake: str, folder: Path | None) -> None:
    """Probe with an anonymous temp file: permission bits say nothing to root or on read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        where = "" if folder is None or str(folder) == str(Path(lake).absolute()) else f" (in {folder})"
        raise LakeError(f"cannot write to the lake {lake}{where}: {e.strerror or e}; "
                        "pass a --lake soclake may write to") from e


def _require_s3_lake(uri: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline import aws
    from pipeline.sources.s3 import split_s3_uri

    bucket, prefix = split_s3_uri(uri)
    try:
        page = aws.s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise LakeError(f"no lake at {uri}: bucket {bucket} does not exist (check --lake or SOCLAKE_LAKE)") from e
        raise LakeError(f"cannot read the lake {uri}: {code or e} (check the credentials of --profile)") from e
    except BotoCoreError as e:
        raise LakeError(f"cannot read the lake {uri}: {aws.describe(e)}") from e
    if not page.get("KeyCount") and not page.get("Contents"):
        raise LakeError(f"no lake at {uri}: nothing under it (check --lake or SOCLAKE_LAKE; soclake ingest creates a lake)")


def check_window(args) -> None:
    """``--since`` after ``--until`` would evaluate or list nothing and exit 0: a usage error."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is None or until is None:
        return
    empty = since >= until if isinstance(since, dt.datetime) else since > until
    if empty:
        raise UsageError(f"--since {since.isoformat()} is not before --until {until.isoformat()}: "
                         "the window is empty (swap them?)")


def one_line(e: BaseException) -> str:
    """A message for an environment failure that is not ours (a file, a socket, AWS), with what it hit."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(e, BotoCoreError):
        from pipeline.aws import describe

        return describe(e)
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"AWS {e.operation_name} failed: {err.get('Code', '?')}: {err.get('Message', '')}".rstrip(": ")
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def check_folders(flag: str, env: str, folders: list[str], kind: str,
                  pattern: str | tuple[str, ...] = ("**/*.yml", "**/*.yaml")) -> None:
    """Each folder given by ``flag`` (or the ``env`` variable) exists and holds ``kind`` files:
    a typo must not silently run the built-in catalogue alone."""
    given = [(flag, d) for d in folders if d]
    given += [(env, d) for d in (os.environ.get(env) or "").split(os.pathsep) if d]
    for source, d in given:
        path = Path(d)
        if not path.exists() and any(c in d for c in "*?["):
            raise ConfigError(f"{source} {d}: takes a folder, not a pattern (pass the folder holding the {kind} files)")
        if not path.exists():
            raise ConfigError(f"{source} {d}: no such folder (pass a folder of {kind} files, *.yml)")
        if not path.is_dir():
            raise ConfigError(f"{source} {d}: is a file, not a folder (pass the folder holding it)")
        if not any(p for pat in ((pattern,) if isinstance(pattern, str) else pattern) for p in path.glob(pat)):
            raise ConfigError(f"{source} {d}: holds no {kind} files (*.yml, *.yaml): check the folder")

"""A suppression proposed from an alert closed as a false positive (``soclake alert ID close
--disposition false_positive --suppress --suppressions FILE``).

The entry names the alert's rule, its principals and its source IPs (each as a /32 or /128), so it
matches that activity again and nothing broader; it expires after :data:`EXPIRES_AFTER` so an
exception is looked at again. It is added to the ``suppressions:`` list of the tuning file as
text (the file's comments and layout are kept), checked by loading the result like detect does,
and written atomically. An alert with neither a principal nor a source IP gets no proposal: a
rule-wide suppression is a decision to make in the file by hand.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import tempfile

import yaml

from pipeline.detect.alerts import Alert
from pipeline.detect.suppress import principals
from pipeline.errors import ConfigError

EXPIRES_AFTER = dt.timedelta(days=90)


def proposal(alert: Alert, who: str, note: str | None, today: dt.date) -> dict:
    entry: dict = {"id": f"fp-{alert.id[:12]}", "rule": alert.rule_id}
    who_acted = principals(alert)
    if who_acted:
        entry["principal"] = who_acted[0] if len(who_acted) == 1 else who_acted
    nets = []
    for ip in alert.source_ips:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue  # a service name (cloudtrail.amazonaws.com) is no network
        nets.append(f"{addr}/{addr.max_prefixlen}")
    if nets:
        entry["source_cidr"] = nets
    if "principal" not in entry and "source_cidr" not in entry:
        raise ConfigError(f"alert {alert.id[:12]} names no principal and no source IP: a suppression would cover "
                          f"every alert of {alert.rule_id}; write one by hand if that is meant")
    entry["reason"] = f"false positive ({who}, {today.isoformat()}): {note or alert.title}"
    entry["expires"] = (today + EXPIRES_AFTER).isoformat()
    return entry


def _item_text(entry: dict, indent: str, alert_id: str) -> str:
    body = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000)
    lines = [f"{indent}# proposed by soclake when alert {alert_id} was closed as false_positive"]
    lines += [f"{indent}{line}" for line in body.splitlines()]
    return "\n".join(lines) + "\n"


def add_to_file(path: str, entry: dict, alert_id: str) -> bool:
    """Add ``entry`` to the file's ``suppressions:`` (creating the file or the list); False when the
    same entry (rule, principal, networks) is already there."""
    text = open(path).read() if os.path.exists(path) else ""
    doc = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a tuning file (a mapping with suppressions: and/or rules:)")
    same = ("rule", "principal", "source_cidr")
    for item in doc.get("suppressions") or []:
        if isinstance(item, dict) and all(item.get(k) == entry.get(k) for k in same):
            return False
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    head = next((i for i, ln in enumerate(lines) if re.match(r"suppressions\s*:", ln)), None)
    if head is None:
        new = "".join(lines) + ("\n" if lines else "") + "suppressions:\n" + _item_text(entry, "  ", alert_id)
    else:
        if re.match(r"suppressions\s*:\s*(\[\s*\]|null|~)?\s*(#.*)?$", lines[head].rstrip("\n")) is None:
            raise ConfigError(f"{path}: suppressions: is not a block list; add the entry by hand: "
                              + json.dumps(entry))
        lines[head] = "suppressions:\n"
        end = head + 1  # the block ends at the next top-level key
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#-"):
            end += 1
        while end > head + 1 and not lines[end - 1].strip():
            end -= 1
        item = next((ln for ln in lines[head + 1:end] if ln.lstrip().startswith("- ")), "  - ")
        indent = item[: len(item) - len(item.lstrip())]
        new = "".join(lines[:end]) + _item_text(entry, indent, alert_id) + "".join(lines[end:])
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".soclake-", suffix=".yml", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new)
        from pipeline.detect.rule_config import load_tuning

        load_tuning(tmp)  # the result must load as detect reads it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True

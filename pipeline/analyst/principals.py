"""One spelling per principal, so the report counts an actor once.

GuardDuty names the principal of an access-key finding by ``accessKeyDetails`` (``userName``
``ci-legacy``, ``principalId``, ``userType`` ``IAMUser``); CloudTrail by ``userIdentity.arn``
(``arn:aws:iam::303373800728:user/ci-legacy``). The alerts keep the spelling of their source, so
without this the same user shows up twice in "top actors". The ARN is the one spelling: it is
taken from a CloudTrail alert that used the same access key when there is one, else built from
GuardDuty's fields (which is exact for IAM users, root and assumed-role sessions).
"""

from __future__ import annotations


def arn_from_guardduty(user_type: str | None, user_name: str | None, principal_id: str | None,
                       account: str | None, partition: str | None = "aws") -> str | None:
    """The ARN CloudTrail would write for a GuardDuty ``accessKeyDetails`` principal, or None."""
    partition = partition or "aws"
    if not account:
        return None
    if user_type == "Root":
        return f"arn:{partition}:iam::{account}:root"
    if user_type == "IAMUser" and user_name:
        return f"arn:{partition}:iam::{account}:user/{user_name}"
    if user_type == "AssumedRole" and user_name and principal_id and ":" in principal_id:
        return f"arn:{partition}:sts::{account}:assumed-role/{user_name}/{principal_id.split(':', 1)[1]}"
    if user_type == "FederatedUser" and user_name:
        return f"arn:{partition}:sts::{account}:federated-user/{user_name}"
    return None


def key_owners(alerts: list[dict]) -> dict[str, str]:
    """access key id -> the one principal ARN that the alerts' entities pair it with."""
    seen: dict[str, set[str]] = {}
    for a in alerts:
        ents = a.get("entities") or ()
        arns = {e.split(":", 1)[1] for e in ents if e.startswith("principal:arn:")}
        for e in ents:
            if e.startswith("access_key:") and len(arns) == 1:
                seen.setdefault(e.split(":", 1)[1], set()).update(arns)
    return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}


def canonical_actors(alerts: list[dict], findings: dict[str, tuple]) -> dict[str, str | None]:
    """alert id -> its actor spelled as an ARN where the evidence allows.

    ``alerts`` carry ``id``, ``actor``, ``account_id``, ``entities`` and ``finding_ids``;
    ``findings`` map a GuardDuty finding id to (user_type, user_name, principal_id,
    access_key_id, account_id, partition). Actors that are not principals (instance ids) and
    actors already given as ARNs stay as they are.
    """
    owners = key_owners(alerts)
    out: dict[str, str | None] = {}
    for a in alerts:
        actor = a.get("actor")
        if not actor or actor.startswith("arn:"):
            out[a["id"]] = actor
            continue
        resolved = None
        for fid in a.get("finding_ids") or ():
            f = findings.get(fid)
            if not f:
                continue
            user_type, user_name, principal_id, key, account, partition = f
            if actor not in (user_name, principal_id):
                continue  # the alert's actor is the instance, not the key's principal
            resolved = owners.get(key or "") or arn_from_guardduty(user_type, user_name, principal_id,
                                                                    account or a.get("account_id"), partition)
            if resolved:
                break
        out[a["id"]] = resolved or actor
    return out

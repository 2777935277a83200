"""Grouping alerts into incidents: shared entities, windows, severity, stable ids."""

import datetime as dt

from pipeline.correlate.incidents import build_incidents, group_alerts

T0 = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)


def alert(id, rule, minutes, entities, severity="medium", tactics=("TA0001",), actor=None, detected=0):
    start = T0 + dt.timedelta(minutes=minutes)
    return {"id": id, "rule_id": rule, "severity": severity, "title": f"{rule} {id}", "first_seen": start,
            "last_seen": start + dt.timedelta(minutes=1), "entities": list(entities), "tactics": list(tactics),
            "techniques": [], "actor": actor, "account_id": "111111111111", "event_count": 1, "evidence": "[]",
            "detected_at": T0 + dt.timedelta(days=1, minutes=detected), "first_detected_at": None}


def test_alerts_sharing_an_entity_within_the_window_are_one_incident_in_time_order():
    alerts = [alert("c", "r3", 50, ["principal:bob"]), alert("a", "r1", 0, ["access_key:AKIA1"]),
              alert("b", "r2", 20, ["access_key:AKIA1", "principal:bob"])]
    [inc] = build_incidents(alerts)
    assert [t["alert_id"] for t in inc.timeline] == ["a", "b", "c"]  # linked transitively, ordered
    assert inc.entities == ["access_key:AKIA1", "principal:bob"]


def test_outside_the_window_or_another_entity_are_separate():
    alerts = [alert("a", "r1", 0, ["principal:bob"], "high"), alert("b", "r2", 60 * 30, ["principal:bob"], "high"),
              alert("c", "r3", 5, ["principal:eve"], "high")]
    assert sorted(len(g) for g in group_alerts(alerts, dt.timedelta(hours=24))) == [1, 1, 1]
    assert len(group_alerts(alerts, dt.timedelta(hours=48))) == 2


def test_a_lone_or_single_rule_low_alert_is_not_an_incident():
    lone = [alert("a", "guardduty_finding", 0, ["instance:i-1"], "low")]
    repeated = lone + [alert("b", "guardduty_finding", 30, ["instance:i-1"], "medium")]
    assert build_incidents(lone) == [] and build_incidents(repeated) == []
    assert len(build_incidents([alert("h", "r", 0, ["instance:i-1"], "high")])) == 1


def test_severity_escalates_with_breadth_root_and_guardduty():
    tactics = [alert("a", "r1", 0, ["principal:x"], tactics=["TA0007"]), alert("b", "r2", 1, ["principal:x"], tactics=["TA0003"]),
               alert("c", "r3", 2, ["principal:x"], tactics=["TA0005"])]
    assert build_incidents(tactics)[0].severity == "high"  # medium + three tactics
    root = [alert("a", "r1", 0, ["principal:arn:aws:iam::1:root"], "high", actor="arn:aws:iam::1:root")]
    assert build_incidents(root)[0].severity == "critical"
    gd = [alert("g", "guardduty_finding", 0, ["access_key:K"], "high"), alert("c", "iam_x", 5, ["access_key:K"], "medium")]
    assert build_incidents(gd)[0].severity == "critical"
    assert build_incidents([alert("z", "r", 0, ["principal:y"], "critical"), alert("y", "q", 1, ["principal:y"], "critical",
                                                                                  tactics=["TA0002", "TA0003"])])[0].severity == "critical"


def test_ids_are_stable_and_a_late_alert_extends_its_incident():
    first = [alert("a", "r1", 0, ["principal:bob"]), alert("b", "r2", 10, ["principal:bob"])]
    [inc] = build_incidents(first)
    assert build_incidents(list(reversed(first)))[0].id == inc.id
    late = alert("l", "r3", -30, ["principal:bob"], detected=600)  # happened earlier, detected later
    [again] = build_incidents(first + [late])
    assert again.id == inc.id and again.alert_count == 3 and again.timeline[0]["alert_id"] == "l"

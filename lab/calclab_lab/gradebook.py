"""From scenario results to gradebook entries: points per role, the class's grades.json and
grades.csv (the schema is in docs/grades.md).

Every check item belongs to one role, the program whose behaviour it is about (the one at fault
when it fails).  Items carry it as item["role"]; an item without one gets it from the check's
name and what its detail says about the connection it looked at.  Only the roles a submission
wrote and is graded on score: items of a role played by calclab's own programs are left out of
both the score and the maximum, so a wrong answer from our program never costs the student.
The maximum is the class's: each scenario's points are shared among the roles as a fully correct
play of it shares them (point_table), whatever a hand-in's run produced."""
import csv
import json
import os
import re

ROLES = ("server", "proxy", "client")
PROXY_CHECKS = {"upstream-connections", "cache-hit-no-upstream", "ordering", "refused-answer"}


def _segments(detail):
    """(request segments, response segments) named by a segmentation item's detail."""
    m = re.search(r"request in (\d+) segment", detail)
    return int(m.group(1)) if m else 1


def derive_role(name, detail, front, down=()):
    """The role an item is about when it does not say: from the check's name, and for the
    per-connection checks from whether the item is about the client's connection (client and
    `front`, the program it talks to) or the proxy's upstream one (proxy and server).  `down`:
    roles whose program never listened in this run (a missing connection is theirs)."""
    d = detail.lower()
    if name.startswith("client-"):
        return "client"
    if name in PROXY_CHECKS:
        return "proxy"
    if name == "malformed-answer":
        return "server"
    for role in ROLES:
        if name.startswith(role + "-"):
            return role
    if "no connection in the capture" in d:
        return front if front in down else "client"
    upstream = "upstream" in d
    if name == "connections":
        return front if front in down else "client"
    if name == "handshake":
        return "server" if upstream else front
    if name == "request-size":
        return "proxy" if upstream else "client"
    if name == "response-size":
        return "server" if upstream else front
    if name == "segmentation":
        if upstream:
            return "proxy" if _segments(d) != 1 else "server"
        return "client" if _segments(d) != 1 else front
    if name == "teardown":
        if upstream:
            return "server" if "led by the server" in d else "proxy"
        return front if "the other side" in d else "client"
    if name == "rst":
        if upstream:
            return "proxy"
        return front if "the other side" in d else "client"
    return front


def item_passed(item):
    return bool(item.get("passed", item.get("ok", False)))


def _request_tag(detail):
    m = re.match(r"(request \d+) \(", detail)
    return m.group(1) if m else None


def _reset_by_front(checks):
    """The requests whose client connection the server or proxy reset."""
    out = set()
    for c in checks:
        if c["name"] == "rst":
            for it in c.get("items", []):
                d = it.get("detail", "")
                if not item_passed(it) and "upstream" not in d and "the other side" in d:
                    out.add(_request_tag(d))
    return out


def point_table(reference, wanted, front):
    """{(check, role): points}: how a scenario's points are shared among the roles, read from a
    fully correct play of it (`reference`: its checks as dicts): each check's points are shared
    by its items of the `wanted` roles.  It depends on the scenario and the wanted roles only, so
    every hand-in graded on them gets the same maximum per role, whatever its run looked like."""
    table = {}
    for c in reference:
        roles = [it["role"] if it.get("role") in ROLES else derive_role(c["name"], it.get("detail", ""), front)
                 for it in c.get("items", [])]
        counted = [r for r in roles if r in wanted]
        points = float(c.get("max_score", c.get("max_points", 1)))
        for r in counted:
            table[(c["name"], r)] = table.get((c["name"], r), 0.0) + points / len(counted)
    return {k: v for k, v in table.items() if v > 0}


def parse_weights(text):
    """'server=40,proxy=40,client=20' -> {role: points}; ValueError saying what is wrong."""
    out = {}
    for part in text.split(","):
        role, eq, points = part.strip().partition("=")
        try:
            value = float(points) if eq else None
        except ValueError:
            value = None
        if role not in ROLES or role in out or value is None or not 0 < value < 1e6:
            raise ValueError(f"expected ROLE=POINTS,... with roles {', '.join(ROLES)} once each and points > 0, "
                             f"got {text!r}")
        out[role] = value
    return out


def weight_factors(maxima, weights):
    """role -> what its points are multiplied by so that its maximum (`maxima`, role_maxima) is the
    course's weight for it (`weights`: role -> points); roles without a weight keep theirs."""
    return {r: weights[r] / m for r, m in maxima.items() if r in (weights or {}) and m}


def scaled(table, factors):
    """A point table with each role's points multiplied by its factor."""
    return {k: v * factors.get(k[1], 1.0) for k, v in table.items()}


def role_maxima(tables):
    """role -> its maximum over the scenarios' point tables."""
    out = {}
    for table in tables:
        for (_, role), points in table.items():
            out[role] = out.get(role, 0.0) + points
    return {r: out[r] for r in ROLES if r in out}


def _assign_roles(checks, front, down, client_conns):
    """(check name, items with their role at fault), per check of the run."""
    deviant = set(client_conns)
    reset = _reset_by_front(checks)
    out = []
    for c in checks:
        items = []
        for it in c.get("items", []):
            tag = _request_tag(it.get("detail", ""))
            if deviant and not item_passed(it) and (it.get("conn") in deviant or (
                    c["name"] == "upstream-connections" and it.get("conn") is None)):
                items.append(dict(it, role="client", passed=False))
                continue
            if (c["name"] == "teardown" and "role" not in it and tag in reset
                    and "upstream" not in it.get("detail", "")):
                # a connection the other side reset has no orderly teardown, whoever sent a FIN
                # first: which of the FIN and the RST leaves first is a race, the reset is not
                items.append(dict(it, role=front, passed=False,
                                  detail=it.get("detail", "") + f"; the {front} reset the connection"))
                continue
            if it.get("role") in ROLES:
                role = it["role"]
            else:
                role = derive_role(c["name"], it.get("detail", ""), front, down)
            items.append(dict(it, role=role, passed=item_passed(it)))
        out.append((c["name"], float(c.get("max_score", c.get("max_points", 1))), items))
    return out


def role_checks(checks, graded, front, table, down=(), client_conns=(), factors=None):
    """The scenario's checks split by role, scored on the scenario's point table (point_table):
    one entry per (check, role) with items of a graded role, and per graded role its score and
    maximum in the scenario.  A role's maximum is its share of the table; the checks it has items
    in share it in proportion to their table points (a check the run gave no items of the role,
    such as the refused answer of a client that never causes one, passes its points on to the
    role's other checks), each scored by the share of its items that pass.  A failed item of a
    check the table gives the role no points in (a server leading the teardown the reference's
    client leads) costs the role what each of the check's items is worth in this run (the
    entry's "penalty", its score and maximum staying 0), down to 0 for the role in the scenario.  `client_conns`: connections
    (calc-sniff ids, upstream ones included) of client runs that did not send one request on one
    connection; what fails about them (sizes, upstream counts) follows from the client's doing.
    `factors`: role -> the weight factor its table points carry (weight_factors), which its
    penalties carry too."""
    groups, worth = {}, {}
    for name, points, items in _assign_roles(checks, front, down, client_conns):
        counted = [it for it in items if it["role"] in graded]
        for it in counted:
            groups.setdefault((name, it["role"]), []).append(it)
        if counted:
            worth[name] = points / len(counted)
    per_role = {}
    for role in graded:
        budget = sum(p for (_, r), p in table.items() if r == role)
        tested = sum(table.get(k, 0.0) for k in groups if k[1] == role)
        per_role[role] = {"budget": budget, "scale": budget / tested if tested else 0.0, "lost": 0.0}
    out = []
    for (name, role), mine in groups.items():
        v = per_role[role]
        failed = sum(not it["passed"] for it in mine)
        top = table.get((name, role), 0.0) * v["scale"]
        lost = top * failed / len(mine) if top else worth[name] * failed * (factors or {}).get(role, 1.0)
        v["lost"] += lost
        c = {"name": name, "role": role, "score": round(top - lost, 3), "max_score": round(top, 3),
             "passed": all(it["passed"] for it in mine), "items": mine}
        if not top and lost:
            # worth nothing to this role, yet its failure costs it: a penalty on the role's score
            c.update(score=0.0, penalty=round(lost, 3))
        out.append(c)
    roles = {}
    for role, v in per_role.items():
        if not v["budget"]:
            continue  # the scenario does not play this role (the proxy in 3.1)
        # a role none of whose checks had an item in this run was not seen doing anything
        score = max(0.0, v["budget"] - v["lost"]) if v["scale"] else 0.0
        roles[role] = {"score": round(score, 3), "max_score": round(v["budget"], 3)}
    untested = [f"{role} {name}" for (name, role) in table if role in graded and (name, role) not in groups]
    return out, roles, untested


def entry(sub_id, status, scenarios=(), maxima=None, files=None, **extra):
    """One submission of grades.json.  `maxima`: role -> its maximum on the class's scenarios
    (role_maxima), the same for every hand-in; a role the hand-in lacks scores 0 of it.  An
    ungradeable one (status not 'graded') scores zero of the same maximum."""
    scenarios = list(scenarios)
    roles = {r: {"score": 0.0, "max_score": round(m, 3)} for r, m in (maxima or {}).items()}
    if status == "graded":
        for s in scenarios:
            for r, v in s.get("roles", {}).items():
                if r in roles:
                    roles[r]["score"] += v["score"]
    for v in roles.values():
        v["score"] = round(min(v["score"], v["max_score"]), 3)
    e = {"id": sub_id, "score": round(sum(v["score"] for v in roles.values()), 3),
         "max_score": round(sum(v["max_score"] for v in roles.values()), 3), "roles": roles, "status": status,
         "files": files or {}, "scenarios": scenarios}
    e.update(extra)
    return e


def check_columns(entries):
    """The gradebook's per-check columns, 'SCENARIO ROLE CHECK', in the order first seen."""
    cols = []
    for e in entries:
        for s in e["scenarios"]:
            for c in s["checks"]:
                k = f"{s['scenario']} {c['role']} {c['name']}"
                if k not in cols:
                    cols.append(k)
    return cols


def _num(x):
    return f"{x:g}"


def write_csv(path, entries):
    cols = check_columns(entries)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max_score", "server", "proxy", "client", "status"] + cols)
        for e in entries:
            by = {f"{s['scenario']} {c['role']} {c['name']}": c for s in e["scenarios"] for c in s["checks"]}
            row = [e["id"], _num(e["score"]), _num(e["max_score"])]
            row += [_num(e["roles"][r]["score"]) if r in e["roles"] else "" for r in ROLES]
            row.append(e["status"])
            row += [_num(by[k]["score"] if e["status"] == "graded" else 0) if k in by else "" for k in cols]
            w.writerow(row)


def write_json(path, entries):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"submissions": entries}, f, indent=1)
    os.replace(tmp, path)


def verdicts(entries):
    """What must not depend on how many submissions ran at once: per submission its status,
    points and every check item's pass/fail."""
    out = {}
    for e in entries:
        out[e["id"]] = {"status": e["status"], "score": e["score"], "max_score": e["max_score"],
                        "roles": e["roles"],
                        "checks": sorted((s["scenario"], c["role"], c["name"], c["score"],
                                          tuple(it["passed"] for it in c["items"]))
                                         for s in e["scenarios"] for c in s["checks"])}
    return out

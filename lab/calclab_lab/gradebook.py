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

ROLES = ("server", "proxy", "client")


class UntypedItem(ValueError):
    """A check item that does not say which role it is about: blame is set by whoever makes the
    item (calc-sniff verify, the lab's checks), never guessed from its text."""


def item_role(check, item):
    role = item.get("role")
    if role not in ROLES:
        raise UntypedItem(f"check {check}: an item without a role ({item.get('detail', '')[:120]!r})")
    return role


def item_passed(item):
    return bool(item.get("passed", item.get("ok", False)))


def _reset_conns(checks):
    """conn -> the role that reset it (a failed rst item of the server or proxy)."""
    out = {}
    for c in checks:
        if c["name"] == "rst":
            for it in c.get("items", []):
                if not item_passed(it) and it.get("role") in ("server", "proxy") and it.get("conn") is not None:
                    out[it["conn"]] = it["role"]
    return out


def point_table(reference, wanted):
    """{(check, role): points}: how a scenario's points are shared among the roles, read from a
    fully correct play of it (`reference`: its checks as dicts): each check's points are shared
    by its items of the `wanted` roles.  It depends on the scenario and the wanted roles only, so
    every hand-in graded on them gets the same maximum per role, whatever its run looked like."""
    table = {}
    for c in reference:
        roles = [item_role(c["name"], it) for it in c.get("items", [])]
        counted = [r for r in roles if r in wanted]
        points = float(c.get("max_score", c.get("max_points", 1)))
        for r in counted:
            table[(c["name"], r)] = table.get((c["name"], r), 0.0) + points / len(counted)
    return {k: v for k, v in table.items() if v > 0}


# What a hand-in's roles are worth by default: the server and the proxy are what students write,
# the client is mostly the course's skeleton.  100 points in all.
DEFAULT_WEIGHTS = {"server": 40.0, "proxy": 40.0, "client": 20.0}
HALF = 5          # points are kept in tenths (ints, no float noise); a table's unit is half a point
PENALTY = 10      # a failed check worth nothing to the role that failed it: -1 point


def tenths(x):
    """Points (a number with at most one decimal) as an int of tenths."""
    return int(round(float(x) * 10))


def points(t):
    """An int of tenths as the number the outputs show: 12.5, 40.0 (never 12.500000001)."""
    return round(t / 10, 1)


def _half_up(num, den):
    """num/den rounded to the nearest int, halves up (exact: ints only)."""
    return (2 * num + den) // (2 * den)


def allocate(total, shares, unit=HALF):
    """{key: tenths}: `total` tenths (a multiple of `unit`) shared among the keys of `shares`
    (key -> weight > 0, in order) in proportion to their weights, in whole units, adding up to
    `total` exactly: each key gets the units its quota holds whole, the units left go to the
    largest remainders (the first key on ties).  While there are units enough, no key is left
    with none: a check in the table is worth something."""
    keys = [k for k, w in shares.items() if w > 0]
    if not keys or total <= 0:
        return {k: 0 for k in shares}
    units = total // unit
    weight = sum(shares[k] for k in keys)
    quota = {k: shares[k] * units / weight for k in keys}
    got = {k: int(quota[k]) for k in keys}
    left = units - sum(got.values())
    for k in sorted(keys, key=lambda k: (-(quota[k] - got[k]), keys.index(k)))[:left]:
        got[k] += 1
    if units >= len(keys):
        for k in keys:
            if got[k] == 0:  # take one from the key with the most (the last such on ties)
                rich = max(keys, key=lambda j: (got[j], keys.index(j)))
                got[rich] -= 1
                got[k] = 1
    return {k: got.get(k, 0) * unit for k in shares}


def parse_weights(text):
    """'server=40,proxy=40,client=20' -> {role: points}; ValueError saying what is wrong.  Points
    are whole or half points (each check's share is)."""
    out = {}
    for part in text.split(","):
        role, eq, pts = part.strip().partition("=")
        try:
            value = float(pts) if eq else None
        except ValueError:
            value = None
        if role not in ROLES or role in out or value is None or not 0 < value < 1e6 or (value * 2) % 1:
            raise ValueError(f"expected ROLE=POINTS,... with roles {', '.join(ROLES)} once each and points > 0 "
                             f"in whole or half points, got {text!r}")
        out[role] = value
    return out


def integration_points(value):
    """--integration's POINTS as a number; ValueError unless 0 or more in whole or half points
    (its tables share them among the roles in half points)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if not 0 <= v < 1e6 or (v * 2) % 1:
        raise ValueError(f"expected 0 or more points in whole or half points, got {value!r}")
    return v


def weighted_tables(raw, weights=None):
    """The class's point tables: raw (scenario -> {(check, role): share}, what a fully correct
    play gives each check's items) turned into scenario -> {(check, role): tenths}, where each
    role's checks over all the scenarios share its weight (`weights`, role -> points, default
    DEFAULT_WEIGHTS for the roles not given) in half points adding up to it exactly."""
    w = dict(DEFAULT_WEIGHTS)
    w.update(weights or {})
    out = {name: {} for name in raw}
    for role in ROLES:
        shares = {(name, key): v for name, t in raw.items() for key, v in t.items() if key[1] == role}
        for (name, key), t in allocate(tenths(w[role]), shares).items():
            out[name][key] = t
    return out


def role_maxima(tables):
    """role -> its maximum (tenths) over the scenarios' point tables."""
    out = {}
    for table in tables:
        for (_, role), t in table.items():
            out[role] = out.get(role, 0) + t
    return {r: out[r] for r in ROLES if r in out}


def _assign_roles(checks, client_conns):
    """(check name, items with their role at fault), per check of the run.  Two typed rules move
    blame: what failed on a client run's deviant connections (`client_conns`) is the client's,
    and a connection the server or proxy reset has no orderly teardown whoever sent a FIN first
    (which of the FIN and the RST leaves first is a race; the reset is not)."""
    deviant = set(client_conns)
    reset = _reset_conns(checks)
    out = []
    for c in checks:
        items = []
        for it in c.get("items", []):
            role = item_role(c["name"], it)
            if deviant and not item_passed(it) and (it.get("conn") in deviant or (
                    c["name"] == "upstream-connections" and it.get("conn") is None)):
                items.append(dict(it, role="client", passed=False))
                continue
            if c["name"] == "teardown" and it.get("conn") in reset and role == "client":
                who = reset[it["conn"]]
                items.append(dict(it, role=who, passed=False,
                                  detail=it.get("detail", "") + f"; the {who} reset the connection"))
                continue
            items.append(dict(it, role=role, passed=item_passed(it)))
        out.append((c["name"], float(c.get("max_score", c.get("max_points", 1))), items))
    return out


def role_checks(checks, graded, table, client_conns=()):
    """The scenario's checks split by role, scored on the scenario's point table (tenths,
    weighted_tables): one entry per (check, role) with items of a graded role, and per graded
    role its score and maximum in the scenario.  A role's maximum is its share of the table; the
    checks it has items in share it again in half points in proportion to their table points (a
    check the run gave no items of the role, such as the refused answer of a client that never
    causes one, passes its points on to the role's other checks), each scored by the share of
    its items that pass, to a tenth.  A failed check the table gives the role nothing in (a
    server leading the teardown the reference's client leads) is a penalty of one point
    ("-1: what failed"), down to 0 for the role in the scenario.  `client_conns`: connections
    (calc-sniff ids, upstream ones included) of client runs that did not send one request on one
    connection; what fails about them (sizes, upstream counts) follows from the client's doing.
    Returns (checks, roles, untested) with points as numbers of at most one decimal."""
    groups = {}
    for name, _, items in _assign_roles(checks, client_conns):
        for it in items:
            if it["role"] in graded:
                groups.setdefault((name, it["role"]), []).append(it)
    tops, budgets = {}, {}
    for role in graded:
        budgets[role] = sum(t for (_, r), t in table.items() if r == role)
        tested = {name: table[(name, r)] for (name, r) in groups if r == role and table.get((name, r))}
        for name, t in allocate(budgets[role], tested).items():
            tops[(name, role)] = t
    lost = {role: 0 for role in graded}
    out = []
    for (name, role), mine in groups.items():
        failed = [it for it in mine if not it["passed"]]
        top = tops.get((name, role), 0)
        c = {"name": name, "role": role, "passed": not failed, "items": mine}
        if top:
            score = _half_up(top * (len(mine) - len(failed)), len(mine))
            lost[role] += top - score
            c.update(score=points(score), max_score=points(top))
        else:
            c.update(score=0.0, max_score=0.0)
            if failed and budgets.get(role):
                # worth nothing to this role, yet it failed: a penalty, said as what it is
                lost[role] += PENALTY
                c.update(penalty=points(PENALTY), penalty_reason=f"-{points(PENALTY):g}: {failed[0].get('detail', '')}")
        out.append(c)
    roles = {}
    for role in graded:
        if not budgets[role]:
            continue  # the scenario does not play this role (the proxy in 3.1)
        tested = any(tops.get((name, r)) for (name, r) in groups if r == role)
        # a role none of whose checks had an item in this run was not seen doing anything
        score = max(0, budgets[role] - lost[role]) if tested else 0
        roles[role] = {"score": points(score), "max_score": points(budgets[role])}
    untested = [f"{role} {name}" for (name, role) in table if role in graded and (name, role) not in groups]
    return out, roles, untested


def integration_weights(maxima, total):
    """role -> points of the integration runs (all the student's programs at once), `total`
    points shared among the roles as their maxima (tenths) share the hand-in's, in half points."""
    return {r: points(t) for r, t in allocate(tenths(total), dict(maxima)).items()}


def integration(scenarios, max_tenths, status):
    """The entry's integration section: the runs with all the student's programs at once, scored
    on integration tables worth `max_tenths` in all (0: feedback only)."""
    got = sum(tenths(v["score"]) for s in scenarios for v in s.get("roles", {}).values()) if status == "graded" else 0
    return {"score": points(min(got, max_tenths)), "max_score": points(max_tenths), "scenarios": list(scenarios)}


def is_lab_error(e):
    return e["status"].startswith("lab error: ")


def entry(sub_id, status, scenarios=(), maxima=None, files=None, **extra):
    """One submission of grades.json.  `maxima`: role -> its maximum (tenths) on the class's scenarios
    (role_maxima), the same for every hand-in; a role the hand-in lacks scores 0 of it.  An
    ungradeable one (status not 'graded') scores zero of the same maximum; a lab error (status
    'lab error: why', calclab's own failure) scores nothing at all: its scores are null, no
    points given or taken."""
    scenarios = list(scenarios)
    got = {r: 0 for r in (maxima or {})}   # tenths
    if status == "graded":
        for s in scenarios:
            for r, v in s.get("roles", {}).items():
                if r in got:
                    got[r] += tenths(v["score"])
    problems = extra.get("problems") or {}
    got = {r: 0 if r in problems else min(t, maxima[r]) for r, t in got.items()}
    roles = {r: {"score": points(got[r]), "max_score": points(m)} for r, m in (maxima or {}).items()}
    for r, why in problems.items():
        if r in roles:
            roles[r]["problem"] = why
    integ = extra.get("integration") or {"score": 0.0, "max_score": 0.0}
    e = {"id": sub_id, "score": points(sum(got.values()) + tenths(integ["score"])),
         "max_score": points(sum((maxima or {}).values()) + tenths(integ["max_score"])),
         "roles": roles, "status": status, "files": files or {}, "scenarios": scenarios}
    e.update(extra)
    if status.startswith("lab error: "):
        e["score"] = None
        e.pop("problems", None)
        for v in roles.values():
            v["score"] = None
            v.pop("problem", None)
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
    return "" if x is None else f"{x:g}"


def _extra_columns(entries):
    """The parts of a score beyond the roles', each a column when some entry has it: the
    integration section (--integration) and the hand-in's own captures (--capture-points)."""
    cols = []
    if any(e.get("integration") for e in entries):
        cols.append("integration")
    if any(c.get("max_score") for e in entries for c in e.get("captures") or []):
        cols.append("captures")
    return cols


def _extra(e, col):
    if is_lab_error(e):
        return ""
    if col == "integration":
        return _num(e["integration"]["score"]) if e.get("integration") else ""
    return _num(points(sum(tenths(c.get("score") or 0) for c in e.get("captures") or [])))


def write_csv(path, entries):
    """grades.csv: per submission its points, each role's, the extra parts' (so the columns add up
    to the score), its status, then each check's."""
    cols = check_columns(entries)
    extra = _extra_columns(entries)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max_score", "server", "proxy", "client", "status"] + extra + cols)
        for e in entries:
            by = {f"{s['scenario']} {c['role']} {c['name']}": c for s in e["scenarios"] for c in s["checks"]}
            row = [e["id"], _num(e["score"]), _num(e["max_score"])]
            row += [_num(e["roles"][r]["score"]) if r in e["roles"] else "" for r in ROLES]
            row.append(e["status"])
            row += [_extra(e, c) for c in extra]
            row += [_num(by[k]["score"] if e["status"] == "graded" else 0) if k in by and not is_lab_error(e) else ""
                    for k in cols]
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

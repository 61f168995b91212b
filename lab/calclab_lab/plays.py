"""A scenario played several times (lab/grade --plays N), judged as one: races found by repetition.

Where what reaches the wire depends on how the programs are scheduled, one play samples it.
The grader provokes the races it knows of (runner.CLOSE_WAIT_MS); repeating the scenario finds
what is left. Each play is judged on its own; then, check by check, an item that fails in any
play fails (its detail from the first play it failed in, ending with the plays it failed in),
and every item whose verdict differed between the plays is listed as a race with those plays.
A check whose plays had different numbers of items (a program that opened another number of
connections) keeps the play that did worst at it, and is listed as a race as a whole."""


def _share(items):
    return sum(it["passed"] for it in items) / len(items) if items else 1.0


def merge(runs):
    """Judge `runs` (RunResults of one scenario, each judged) as one: runs[0] gets the merged
    checks and the other plays' errors; returns the races, [] when every play said the same."""
    n = len(runs)
    first = runs[0]
    names = []
    for r in runs:
        names += [c.name for c in r.checks if c.name not in names]
    races, merged = [], []
    for name in names:
        per = [next((c for c in r.checks if c.name == name), None) for r in runs]
        base = next(c for c in per if c is not None)
        items = [c.items if c is not None else [] for c in per]
        if len({len(x) for x in items}) == 1:
            out = []
            for i in range(len(items[0])):
                failed = [k for k in range(n) if not items[k][i]["passed"]]
                it = dict(items[failed[0] if failed else 0][i])
                if 0 < len(failed) < n:
                    plays = [k + 1 for k in failed]
                    it["detail"] += f" (seen in {len(failed)} of {n} plays: {', '.join(map(str, plays))}" + (
                        f"; packets of play {plays[0]})" if plays[0] != 1 else ")")
                    races.append({"check": name, "role": it.get("role"), "failed_in": plays, "plays": n,
                                  "detail": it["detail"]})
                out.append(it)
        else:
            worst = min(range(n), key=lambda k: (_share(items[k]), k))
            out = [dict(it) for it in items[worst]]
            counts = ", ".join(f"{len(x)} ({sum(not it['passed'] for it in x)} failed)" for x in items)
            failed_roles = sorted({it.get("role") for it in out if not it["passed"]} - {None})
            races.append({"check": name, "role": ",".join(failed_roles) or None,
                          "failed_in": [k + 1 for k in range(n) if _share(items[k]) < 1], "plays": n,
                          "detail": f"{name}: the {n} plays had {counts} items; play {worst + 1}'s are kept"})
        base.items = out
        merged.append(base)
    first.checks = merged
    for r in runs[1:]:
        first.errors += [e for e in r.errors if e not in first.errors]
    return races

"""A scenario played several times (lab/grade --plays N), judged as one: races found by repetition.

Where what reaches the wire depends on how the programs are scheduled, one play samples it.
The grader provokes the races it knows of (runner.CLOSE_WAIT_MS); repeating the scenario finds
what is left. Each play is judged on its own; then, check by check, an item that fails in any
play fails (its detail from the first play it failed in, ending with the plays it failed in),
and every item whose verdict differed between the plays is listed as a race with those plays.
A check whose plays had different numbers of items (a program that opened another number of
connections) keeps the play that did worst at it, and is listed as a race as a whole."""


from dataclasses import replace


def _share(items):
    return sum(it.passed for it in items) / len(items) if items else 1.0


def merge_checks(plays):
    """The checks of `plays` (each play's list of checks.Check, in play order) judged as one:
    (merged checks, races); new values, the plays' own are left as they are."""
    n = len(plays)
    names = []
    for checks in plays:
        names += [c.name for c in checks if c.name not in names]
    races, merged = [], []
    for name in names:
        per = [next((c for c in checks if c.name == name), None) for checks in plays]
        base = next(c for c in per if c is not None)
        items = [c.items if c is not None else () for c in per]
        if len({len(x) for x in items}) == 1:
            out = []
            for i in range(len(items[0])):
                failed = [k for k in range(n) if not items[k][i].passed]
                it = items[failed[0] if failed else 0][i]
                if 0 < len(failed) < n:
                    plays_ = [k + 1 for k in failed]
                    it = replace(it, detail=it.detail + f" (seen in {len(failed)} of {n} plays: "
                                 f"{', '.join(map(str, plays_))}" + (
                                     f"; packets of play {plays_[0]})" if plays_[0] != 1 else ")"))
                    races.append({"check": name, "role": it.role, "failed_in": plays_, "plays": n,
                                  "detail": it.detail})
                out.append(it)
        else:
            worst = min(range(n), key=lambda k: (_share(items[k]), k))
            out = list(items[worst])
            counts = ", ".join(f"{len(x)} ({sum(not it.passed for it in x)} failed)" for x in items)
            failed_roles = sorted({it.role for it in out if not it.passed} - {None})
            races.append({"check": name, "role": ",".join(failed_roles) or None,
                          "failed_in": [k + 1 for k in range(n) if _share(items[k]) < 1], "plays": n,
                          "detail": f"{name}: the {n} plays had {counts} items; play {worst + 1}'s are kept"})
        merged.append(base.with_items(out))
    return merged, races


def merge(runs):
    """Judge `runs` (runner.RunResults of one scenario, each judged) as one: (a new RunResult,
    the races), the RunResult being runs[0] with the merged checks and the other plays' errors
    too; races is [] when every play said the same.  The runs are left as they are."""
    checks, races = merge_checks([r.checks for r in runs])
    first = runs[0]
    errors = list(first.errors)
    extra = []
    for r in runs[1:]:
        new = [e for e in r.errors if e not in errors]
        errors += new
        extra += new
    return first.with_judgement(checks=tuple(checks), errors=first.judgement.errors + tuple(extra)), races

"""OUT/index.html: the class at a glance, one self-contained page (no scripts, no external files):
the score distribution, how many submissions fail each check, and one row per student linking
to their feedback page."""
import html

from . import gradebook

BINS = 10


def _histogram(entries):
    counts = [0] * BINS
    for e in entries:
        if e["score"] is None:
            continue  # a lab error: no points
        frac = e["score"] / e["max_score"] if e["max_score"] else 0.0
        counts[min(BINS - 1, int(frac * BINS))] += 1
    top = max(counts) or 1
    w, h, bar = 40 * BINS + 40, 180, 36
    parts = [f'<svg id="distribution" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 40}" '
             f'font-family="sans-serif" font-size="11">']
    for i, n in enumerate(counts):
        bh = round(h * n / top)
        x = 30 + i * 40
        parts.append(f'<rect class="bin" data-count="{n}" x="{x}" y="{h - bh + 10}" width="{bar}" height="{bh}" '
                     f'fill="#4a7fc1"><title>{i * 10}-{i * 10 + 10}%: {n}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{h - bh + 6}" text-anchor="middle">{n or ""}</text>')
        parts.append(f'<text x="{x + bar / 2}" y="{h + 24}" text-anchor="middle">{i * 10}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def _failing(entries):
    """check column -> (submissions failing it, submissions graded on it)."""
    out = {}
    for e in entries:
        if e["status"] != "graded":
            continue
        for s in e["scenarios"]:
            for c in s["checks"]:
                k = f"{s['scenario']} {c['role']} {c['name']}"
                fail, seen = out.get(k, (0, 0))
                out[k] = (fail + (not c["passed"]), seen + 1)
    return out


def _pts(x):
    return "-" if x is None else f"{x:g}"


def page(entries, dirs):
    n = len(entries)
    graded = [e for e in entries if e["status"] == "graded"]
    rows = []
    for e in entries:
        roles = "".join(f"<td>{_pts(e['roles'][r]['score'])}/{e['roles'][r]['max_score']:g}</td>" if r in e["roles"]
                        else "<td></td>" for r in gradebook.ROLES)
        cls = "ok" if e["status"] == "graded" else "ungraded"
        rows.append(f'<tr class="student {cls}"><td><a href="{html.escape(dirs[e["id"]])}/index.html">'
                    f'{html.escape(e["id"])}</a></td><td>{_pts(e["score"])}/{e["max_score"]:g}</td>{roles}'
                    f'<td>{html.escape(e["status"])}</td></tr>')
    fails = sorted(_failing(entries).items(), key=lambda kv: (-kv[1][0], kv[0]))
    frows = "".join(f'<tr class="check"><td>{html.escape(k)}</td><td class="nfail">{f}</td><td>{s}</td></tr>'
                    for k, (f, s) in fails)
    mean = sum(e["score"] / e["max_score"] for e in graded if e["max_score"]) / len(graded) if graded else 0
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>calclab: class grades</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}} tr.ungraded td{{color:#b00}}</style></head>
<body><h1>Class grades</h1>
<p id="summary">{n} submissions, {len(graded)} graded, {n - len(graded)} not gradable; mean {mean:.0%} of the points</p>
<h2>Score distribution</h2>
{_histogram(entries)}
<h2>Failing checks</h2>
<table id="checks"><tr><th>check (scenario role name)</th><th>submissions failing</th><th>graded on it</th></tr>{frows}</table>
<h2>Students</h2>
<table id="students"><tr><th>submission</th><th>score</th><th>server</th><th>proxy</th><th>client</th><th>status</th></tr>
{''.join(rows)}</table>
</body></html>
"""


def write(path, entries, dirs):
    with open(path, "w") as f:
        f.write(page(entries, dirs))

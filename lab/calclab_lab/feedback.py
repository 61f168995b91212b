"""A student's feedback folder: index.html (status, points per role, per scenario the sequence
diagram and the checks), feedback.txt (the same as text, with each scenario's timeline), and the
clients' outputs next to the captures and program logs the runs left in each scenario folder."""
import html
import os

from . import handin_captures, report

ROLES = ("server", "proxy", "client")


def _points(e):
    if e["score"] is None:
        return f"none (a lab error: no points given or taken, of {e['max_score']:g})"
    parts = [f"{r} {v['score']:g}/{v['max_score']:g}" for r, v in e["roles"].items()]
    return f"{e['score']:g}/{e['max_score']:g}" + (f" ({', '.join(parts)})" if parts else "")


def _python(py):
    how = "by name (getattr)" if py.get("pickle_flavour") == "getattr" else "by value"
    return (f"{py.get('implementation', 'Python')} {py.get('version')} ({py.get('path')}; enum members pickled "
            f"{how}: requests are judged against what the reference sends under it)")


def _missing(e):
    """The roles graded that the hand-in has no file for (they score 0), when it was graded."""
    return [r for r in e["roles"] if r not in e.get("files", {})] if e["status"] == "graded" else []


def _untested_text(s):
    if not s.get("untested"):
        return []
    return ["not tested in this run (their points go to the role's other checks): " + ", ".join(s["untested"])]


def _sent_text(s):
    out = []
    for run in s.get("client_requests", []):
        ex = ", ".join(run["expressions"]) or "nothing"
        out.append(f"client run {run['run']}: {run['connections']} connection(s), sent {ex}")
    return out


def _races_text(s):
    if not s.get("races"):
        return []
    return [f"race: {r['detail']}" for r in s["races"]]


def _runs_of(runs, s, integration):
    return [r for r in runs if r.name == s["scenario"] and r.integration == integration]


def _run_title(run):
    judged = run.judged
    if run.integration:
        return "run with all your programs at once (the report's set-up)"
    playing = set(run.res.scenario.roles) | {"client"}
    mine = " and ".join(f"your {r}" for r in judged if r in playing)
    if playing <= set(judged):   # lab/grade's templates playing every role
        return f"run judging {mine}"
    return f"run judging {mine}; calclab's programs play the other roles"


def _sections(e):
    out = [("", e["scenarios"], False)]
    integ = e.get("integration")
    if integ is not None:
        title = (f"integration: all your programs at once, {integ['score']:g}/{integ['max_score']:g} points"
                 + ("" if integ["max_score"] else " (feedback only)"))
        out.append((title, integ["scenarios"], True))
    return out


def _problems(e):
    return [f"{r}: {v['problem']} (0 points)" for r, v in e.get("roles", {}).items() if v.get("problem")]


def text(e, runs):
    lines = [f"submission {e['id']}: {e['status']}", f"points: {_points(e)}"]
    if e.get("python"):
        lines.append(f"python: {_python(e['python'])}")
    for role, f in sorted(e.get("files", {}).items()):
        lines.append(f"  {role}: {f}")
    for role in _missing(e):
        lines.append(f"  {role}: no {role}.py handed in (0 points)")
    lines += ["  " + l for l in _problems(e)]
    for title, scenarios, integ in _sections(e):
        if title:
            lines += ["", f"==== {title}"]
        for s in scenarios:
            lines.append("")
            lines.append(f"== {'integration ' if integ else ''}scenario {s['scenario']}: {'PASS' if s['passed'] else 'FAIL'}")
            if s.get("adapted"):
                lines.append(f"   (adapted to the requests the client sent: {s['adapted']})")
            lines += ["   " + l for l in _sent_text(s) + _untested_text(s)]
            for err in s.get("errors", []):
                lines.append(f"   ERROR {err}")
            for c in s["checks"]:
                lines.append(f"   {'PASS' if c['passed'] else 'FAIL'} {c['role']:<6} {c['name']:<22} "
                             f"{report.check_points(c)}")
                for it in c["items"]:
                    if not it["passed"]:
                        lines.append(f"          - {it.get('detail', '')}")
            lines += ["   " + l for l in _races_text(s)]
            for run in _runs_of(runs, s, integ):
                lines.append("")
                lines.append(f"   -- {_run_title(run)}")
                lines.append(report.timeline(run.res, width=40))
    lines += handin_captures.text(e.get("captures"))
    return "\n".join(lines) + "\n"


def _client_outputs(res):
    d = os.path.dirname(res.pcap)
    os.makedirs(d, exist_ok=True)
    for c in res.clients:
        with open(os.path.join(d, f"client-{c['index'] + 1}.txt"), "w") as f:
            f.write(f"$ {' '.join(c['argv'])}\n(exit {c['rc']})\n{c['stdout']}")


def page(e, runs):
    body = [f"<h1>{html.escape(e['id'])}</h1>",
            f'<p class="status {"pass" if e["status"] == "graded" else "fail"}">status: {html.escape(e["status"])}</p>',
            f"<p>points: {html.escape(_points(e))}</p>"]
    if e.get("python"):
        body.append(f"<p>python: {html.escape(_python(e['python']))}</p>")
    if e.get("files"):
        body.append("<p>files: " + ", ".join(f"{html.escape(r)}: <code>{html.escape(f)}</code>"
                                              for r, f in sorted(e["files"].items())) + "</p>")
    for role in _missing(e):
        body.append(f'<p class="fail">{role}: no {role}.py handed in (0 points)</p>')
    for line in _problems(e):
        body.append(f'<p class="fail">{html.escape(line)}</p>')
    for title, scenarios, integ in _sections(e):
        if title:
            body.append(f'<h2 id="integration">{html.escape(title)}</h2>')
        for s in scenarios:
            verdict = "PASS" if s["passed"] else "FAIL"
            body.append(f'<section><h2>{"Integration scenario" if integ else "Scenario"} {html.escape(s["scenario"])} '
                        f'<span class="{verdict.lower()}">{verdict}</span></h2>')
            if s.get("adapted"):
                body.append(f"<p>Adapted to the requests the client sent: {html.escape(s['adapted'])}</p>")
            sent = _sent_text(s) + _untested_text(s) + _races_text(s)
            if sent:
                body.append("<ul>" + "".join(f"<li>{html.escape(l)}</li>" for l in sent) + "</ul>")
            for err in s.get("errors", []):
                body.append(f'<p class="fail">{html.escape(err)}</p>')
            body.append("<table><tr><th>role</th><th>check</th><th>score</th><th>details</th></tr>")
            for c in s["checks"]:
                body.append(f'<tr class="{"pass" if c["passed"] else "fail"}"><td>{c["role"]}</td>'
                            f'<td>{html.escape(c["name"])}</td><td>{html.escape(report.check_points(c))}</td><td>'
                            + "<br>".join(("" if it["passed"] else "FAIL ") + html.escape(it.get("detail", ""))
                                          for it in c["items"]) + "</td></tr>")
            body.append("</table>")
            for run in _runs_of(runs, s, integ):
                res = run.res
                body.append(f"<h3>{html.escape(_run_title(run))}</h3>")
                body.append(report.sequence_svg(res))
                for role, p in res.procs.items():
                    body.append(f"<details><summary>{role} output</summary><pre>{html.escape(p.output())}</pre></details>")
                for c in res.clients:
                    body.append(f"<details><summary>client {c['index'] + 1} output</summary>"
                                f"<pre>{html.escape(c['stdout'])}</pre></details>")
            body.append("</section>")
    caps = handin_captures.text(e.get("captures"))
    if caps:
        body.append("<section><h2>Your captures</h2><pre>" + html.escape("\n".join(caps[2:])) + "</pre></section>")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>calclab: {html.escape(e['id'])}</title>
<style>body{{font-family:sans-serif;margin:1em}} .pass{{color:#080}} .fail{{color:#b00}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}}
section{{margin-bottom:2em}} pre{{font-size:11px;background:#f6f6f6;padding:4px}}</style></head>
<body>{''.join(body)}</body></html>
"""


def write(fdir, e, runs):
    os.makedirs(fdir, exist_ok=True)
    for run in runs:
        if run.res.pcap:
            _client_outputs(run.res)
    with open(os.path.join(fdir, "feedback.txt"), "w") as f:
        f.write(text(e, runs))
    with open(os.path.join(fdir, "index.html"), "w") as f:
        f.write(page(e, runs))

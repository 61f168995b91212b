"""Showing a run: the timeline with the programs' logs side by side, the sequence diagram (HTML
with inline SVG), and the grader's output formats."""
import html
import json
import os
import xml.etree.ElementTree as ET



# ---------------------------------------------------------------- who is who on the wire
FLAG_ORDER = ("SYN", "ACK", "PSH", "FIN", "RST")


def labels(conns, malformed=False):
    """conn id -> (originator's lifeline, responder's): 'client N' (or 'lab N' for the lab's own
    bad requests), 'proxy', 'server', from calc-sniff's conn records and their roles."""
    out = {}
    k = 0
    for c in sorted(conns, key=lambda c: c["id"]):
        role = c.get("role", "other")
        if role in ("client->proxy", "client->server"):
            k += 1
            out[c["id"]] = (f"lab {k}" if malformed else f"client {k}", "proxy" if role == "client->proxy" else "server")
        elif role == "proxy->server":
            out[c["id"]] = ("proxy", "server")
        else:
            out[c["id"]] = (c.get("orig", "?"), c.get("resp", "?"))
    return out


def _ends(names, p):
    a, b = names.get(p["conn"], ("?", "?"))
    return (a, b) if p.get("dir") == "orig" else (b, a)


def seg_text(p):
    flags = [f for f in FLAG_ORDER if f in p.get("flags", [])]
    return f"[{'/'.join(flags)}]" + (f" len={p['len']}" if p.get("len") else "")


def _is_malformed(res):
    return getattr(res, "raw", None) is not None


def failing_packets(res):
    """Frame number -> the failed items' details that name it."""
    out = {}
    for c in res.checks:
        for it in c.failures():
            for n in it.get("packets") or ():
                out.setdefault(n, []).append(f"{c.name}: {it['detail']}")
    return out


# ---------------------------------------------------------------- timeline
def timeline(res, width=None):
    names = labels(res.records("conn"), _is_malformed(res))
    bad = failing_packets(res)
    if width is None:
        import shutil
        ncols = 4 if res.scenario.uses_proxy else 3
        width = max(24, min(48, (shutil.get_terminal_size((200, 40)).columns - 10) // ncols - 2))
    rows = []
    for role, p in res.procs.items():
        for t, line in p.lines:
            rows.append((t, role, line))
    for c in res.clients:
        for t, line in c.get("lines", []):
            if line.startswith(" "):
                continue  # the continuation lines of the steps: the first one is enough here
            rows.append((t, "client", f"#{c['index'] + 1} {line}"))
    for t, who, text in res.events:
        rows.append((t, "wire", f"** {text}"))
    for p in res.records("pkt"):
        a, b = _ends(names, p)
        mark = " <- FAIL " + ", ".join(sorted({d.split(':', 1)[0] for d in bad[p['no']]})) if p["no"] in bad else ""
        rows.append((p["ts"], "wire", f"{p['no']} {a} -> {b} {seg_text(p)}{mark}"))
    if not rows:
        return "(nothing happened)"
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    cols = ["client"] + (["proxy"] if res.scenario.uses_proxy else []) + ["server", "wire"]
    out = [f"{'ms':>8}  " + "  ".join(f"{c:<{width}}" for c in cols)]
    out.append("-" * len(out[0]))
    for t, role, text in rows:
        cells = []
        for c in cols:
            v = text if c == role else ""
            if c != "wire":
                v = v if len(v) <= width else v[:width - 1] + "~"
            cells.append(f"{v:<{width}}")
        out.append(f"{(t - t0) * 1000:8.1f}  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def _item_line(c, it):
    where = f" [{it['role']}]" if it.get("role") else ""
    return f"{'ok  ' if it['passed'] else 'FAIL'} {it['detail']}{where}"


def _items_text(c):
    """A check's verdict without points (lab/scenario judges, it does not grade): items passed."""
    return f"{len(c.items) - len(c.failures())}/{len(c.items)} items"


def summary_text(res, scored=None):
    """A run's summary.  `scored`: the run's scenario in a gradebook entry (lab/grade): its checks
    per graded role with their points; without it (lab/scenario) each check's items passed."""
    out = [f"scenario {res.name}: {res.scenario.title}",
           f"ports: proxy {res.ports.get('proxy')}, server {res.ports.get('server')}; capture {res.pcap}",
           f"isolation: {res.isolation}"]
    if res.golden:
        out.append(f"verified by calc-sniff against {res.golden}: {res.sniff['status']}"
                   + (f" ({res.sniff['reason']})" if res.sniff.get("reason") else ""))
    for e in res.errors:
        out.append(f"  ERROR {e}")
    rows = [(c["passed"], f"{c['role']:<6} {c['name']:<22} {check_points(c)}",
             [it for it in c["items"] if not it["passed"]]) for c in scored["checks"]] if scored is not None else \
        [(c.passed, f"{c.name:<22} {_items_text(c)}", c.failures()) for c in res.checks]
    for passed, text, failed in rows:
        out.append(f"  {'PASS' if passed else 'FAIL'} {text}")
        for it in failed[:4]:
            out.append(f"         - {it['detail']} [{it['role']}]")
        if len(failed) > 4:
            out.append(f"         - ... and {len(failed) - 4} more")
    if scored is not None and scored.get("untested"):
        out.append("  not tested in this run (their points go to the role's other checks): "
                   + ", ".join(scored["untested"]))
    out.append(f"VERDICT {res.name}: {'PASS' if res.passed else 'FAIL'}")
    return "\n".join(out)


# ---------------------------------------------------------------- sequence diagram
COLORS = {"SYN": "#1f77b4", "FIN": "#9467bd", "RST": "#d62728", "PSH": "#2ca02c"}
FAIL_MARK = "#ff2a2a"


def _notes(conns, msgs):
    """(frame number, note) for each request answered from the cache and each refused upstream."""
    out = []
    conn_role = {c["id"]: c.get("role") for c in conns}
    k = {}
    for cid in sorted(cid for cid, r in conn_role.items() if r in ("client->proxy", "client->server")):
        k[cid] = len(k) + 1
    for m in msgs:
        if m.get("kind") == "request" and conn_role.get(m["conn"]) == "client->proxy" \
                and m.get("upstream_connections") == 0:
            out.append((m["last_packet"], f"client {k[m['conn']]}: cache hit, no upstream connection"))
    for c in conns:
        if c.get("role") == "proxy->server" and c.get("teardown") == "refused":
            parent = (c.get("upstream_of") or {}).get("conn")
            out.append((c["last_packet"], f"client {k.get(parent, '?')}: server down, SYN answered by RST"))
    return sorted(out)


def sequence_svg_of(sniff_json, malformed=False, failing=None, title=None, css_class="capture"):
    """One run's sequence diagram from calc-sniff's records: a lifeline per program, an arrow per
    segment (frame number, flags, length, the message it carries); arrows of packets a failed
    check item names are marked (class "arrow fail", a red band, the items as the tooltip)."""
    failing = failing or {}
    conns = [r for r in sniff_json if r.get("type") == "conn"]
    pkts = [r for r in sniff_json if r.get("type") == "pkt"]
    msgs = [r for r in sniff_json if r.get("type") == "msg"]
    names = labels(conns, malformed)
    lanes = []
    for p in pkts:
        for n in _ends(names, p):
            if n not in lanes:
                lanes.append(n)
    order = sorted(lanes, key=lambda n: (0 if n.startswith(("client", "lab")) else 1 if n == "proxy" else 2,
                                         int(n.split()[-1]) if n.split()[-1].isdigit() else 0))
    xs = {n: 90 + i * 190 for i, n in enumerate(order)}
    notes = _notes(conns, msgs)
    step = 26
    top = 50 if title is None else 70
    height = top + 30 + step * (len(pkts) + len(notes) + 1)
    width = 320 + 190 * max(1, len(order) - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence {css_class}" width="{width}" '
             f'height="{height}" font-family="monospace" font-size="11">',
             '<defs><marker id="ah" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="context-stroke"/></marker></defs>']
    if title is not None:
        parts.append(f'<text x="10" y="18" font-weight="bold" font-size="13" class="diagram-title">'
                     f'{html.escape(title)}</text>')
    for n, x in xs.items():
        parts.append(f'<text x="{x}" y="{top - 30}" text-anchor="middle" font-weight="bold" class="lifeline-label">'
                     f'{html.escape(n)}</text>')
        parts.append(f'<line x1="{x}" y1="{top - 22}" x2="{x}" y2="{height - 10}" stroke="#999" stroke-dasharray="4,3"/>')
    by_first = {}
    for m in msgs:
        by_first.setdefault((m["conn"], m["dir"], m["first_packet"]), m)
    y = top
    pending = list(notes)
    for p in pkts:
        a, b = _ends(names, p)
        x1, x2 = xs[a], xs[b]
        kind = next((k for k in ("RST", "FIN", "SYN", "PSH") if k in p.get("flags", [])), "ACK")
        col = COLORS.get(kind, "#777")
        label = f"{p['no']} {seg_text(p)}"
        msg = by_first.get((p["conn"], p["dir"], p["no"])) if p.get("len") else None
        tip = []
        if msg:
            label += f" {msg.get('kind', '')}"
            if msg.get("result") is not None and len(str(msg["result"])) <= 22:
                label += f" = {msg['result']}"
            elif msg.get("header", {}).get("status") in (400, 500):
                label += f" status {msg['header']['status']}"
            tip.append(f"{msg.get('kind')} of {msg.get('size')} B" + (f": {msg['expression']}" if msg.get("expression")
                                                                       else f": {msg['result']}" if msg.get("result")
                                                                       else ""))
        bad = failing.get(p["no"])
        cls = "arrow fail" if bad else "arrow"
        if bad:
            tip += [f"FAIL {d}" for d in bad]
            lo, hi = min(x1, x2), max(x1, x2)
            parts.append(f'<rect class="fail-mark" data-no="{p["no"]}" x="{lo - 6}" y="{y - 15}" width="{hi - lo + 12}" '
                         f'height="20" fill="#ffd6d6" stroke="{FAIL_MARK}" stroke-width="2"/>')
        title_el = f"<title>{html.escape(chr(10).join(tip))}</title>" if tip else ""
        parts.append(f'<line class="{cls}" data-no="{p["no"]}" data-flags="{"/".join(p.get("flags", []))}" '
                     f'data-len="{p.get("len", 0)}" data-from="{html.escape(a)}" data-to="{html.escape(b)}" '
                     f'x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{col}" '
                     f'stroke-width="{2 if p.get("len") or kind != "ACK" else 1}" marker-end="url(#ah)">{title_el}</line>')
        weight = ' font-weight="bold"' if bad else ""
        parts.append(f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="{FAIL_MARK if bad else col}"'
                     f'{weight}>{html.escape(label)}</text>')
        y += step
        while pending and pending[0][0] <= p["no"]:
            _, tag = pending.pop(0)
            px = xs.get("proxy", 90)
            parts.append(f'<rect x="{px + 6}" y="{y - 12}" width="{7 * len(tag) + 10}" height="18" fill="#fff3c4" '
                         f'stroke="#c90"/><text x="{px + 10}" y="{y + 1}" class="note">{html.escape(tag)}</text>')
            y += step
    parts.append("</svg>")
    return "\n".join(parts)


def sequence_svg(res):
    """The run's sequence diagram, the packets of failed items marked."""
    return sequence_svg_of(res.sniff_json, _is_malformed(res), failing_packets(res))


def golden_svg(res):
    """The golden's diagram, drawn the same way (empty when the run has no golden)."""
    if not res.golden_json:
        return ""
    return sequence_svg_of(res.golden_json, css_class="golden")


def write_html(path, results, title="calclab run"):
    body = []
    for res in results:
        verdict = "PASS" if res.passed else "FAIL"
        body.append(f'<section><h2>Scenario {html.escape(res.name)}: {html.escape(res.scenario.title)} '
                    f'<span class="{verdict.lower()}">{verdict}</span></h2>')
        for e in res.errors:
            body.append(f'<p class="fail">{html.escape(e)}</p>')
        body.append('<div class="diagrams"><div class="diagram"><h3>this run</h3>' + sequence_svg(res) + "</div>")
        if res.golden_json:
            body.append('<div class="diagram"><h3>the reference</h3>' + golden_svg(res) + "</div>")
        body.append("</div>")
        body.append("<table><tr><th>check</th><th>items passed</th><th>details</th></tr>")
        for c in res.checks:
            body.append(f'<tr class="{"pass" if c.passed else "fail"}"><td>{html.escape(c.name)}</td>'
                        f'<td>{_items_text(c)}</td><td>'
                        + "<br>".join(html.escape(_item_line(c, it)) for it in c.items) + "</td></tr>")
        body.append("</table></section>")
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} .pass{{color:#080}} .fail{{color:#b00}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}}
section{{margin-bottom:2em}} .diagrams{{display:flex;gap:2em;align-items:flex-start;overflow-x:auto}}</style></head>
<body><h1>{html.escape(title)}</h1>
{''.join(body)}
</body></html>
"""
    with open(path, "w") as f:
        f.write(doc)


# ---------------------------------------------------------------- grading formats
# lab/grade with command templates: every output made from the one gradebook entry (gradebook.py),
# as a hand-in's are; points are tenths there, shown with at most one decimal.
def check_points(c):
    """A scored check's points: '2.5/2.5', or '0/0 (penalty -1: what failed)'."""
    penalty = f" (penalty {c['penalty_reason']})" if c.get("penalty") else ""
    return f"{c['score']:g}/{c['max_score']:g}{penalty}"


def points_text(e):
    """'87.5/100 (server 40/40, proxy 27.5/40, client 20/20)'."""
    roles = ", ".join(f"{r} {v['score']:g}/{v['max_score']:g}" for r, v in e["roles"].items())
    return f"{e['score']:g}/{e['max_score']:g}" + (f" ({roles})" if roles else "")


def full_marks(e):
    """Every point and every check of the graded roles: lab/grade's exit 0."""
    return e["status"] == "graded" and e["score"] == e["max_score"] and \
        all(c["passed"] for s in e["scenarios"] for c in s["checks"])


def _run_dict(res):
    """A run as played (ports, capture, clients, logs, checks with their items' verdicts); its
    checks carry no points: the entry's are the grade."""
    d = res.to_dict()
    d["checks"] = [{k: v for k, v in c.items() if k not in ("score", "max_score")} for c in d["checks"]]
    return d


def junit(e, runs, execution_time):
    """JUnit XML of an entry: a testsuite per scenario, a testcase per check and graded role."""
    failed = [c for s in e["scenarios"] for c in s["checks"] if not c["passed"]]
    total = sum(len(s["checks"]) for s in e["scenarios"])
    suites = ET.Element("testsuites", name="calclab grade", tests=str(total), failures=str(len(failed)),
                        time=f"{execution_time:.3f}")
    took = {r.name: r.res.duration for r in runs}
    for s in e["scenarios"]:
        name = s["scenario"]
        suite = ET.SubElement(suites, "testsuite", name=f"scenario {name}", tests=str(len(s["checks"])),
                              failures=str(sum(not c["passed"] for c in s["checks"])), errors="0",
                              time=f"{took.get(name, 0.0):.3f}")
        for c in s["checks"]:
            case = ET.SubElement(suite, "testcase", classname=f"calclab.scenario_{name.replace('.', '_')}.{c['role']}",
                                 name=c["name"], time="0")
            lines = "\n".join(f"{'ok  ' if it['passed'] else 'FAIL'} {it.get('detail', '')} [{it['role']}]"
                               for it in c["items"])
            ET.SubElement(case, "system-out").text = f"{c['role']} score {check_points(c)}\n{lines}"
            if not c["passed"]:
                ET.SubElement(case, "failure", message=f"{name} {c['name']} ({c['role']}): {check_points(c)}",
                              type="check").text = lines
    return suites


def write_grade_html(path, e, runs):
    """lab/grade --html with templates: the entry's page, as a hand-in's feedback index.html."""
    from . import feedback
    with open(path, "w") as f:
        f.write(feedback.page(e, runs))


def write_grade(out_dir, fmt, e, runs, execution_time):
    """lab/grade with templates: the entry `e` (runs: classgrade.RoleRun) in `fmt`; returns the path."""
    from gradescope import results as gradescope_results  # Gradescope's JSON is made and written in one place
    from . import feedback
    os.makedirs(out_dir, exist_ok=True)
    if fmt == "gradescope":
        path = os.path.join(out_dir, "results.json")
        gradescope_results.write(path, gradescope_results.from_entry(e, execution_time, feedback.text(e, runs)))
    elif fmt == "json":
        path = os.path.join(out_dir, "grade.json")
        with open(path, "w") as f:
            json.dump({"score": e["score"], "max_score": e["max_score"], "roles": e["roles"],
                       "passed": full_marks(e), "execution_time": round(execution_time, 1),
                       "entry": e, "scenarios": [_run_dict(r.res) for r in runs]}, f, indent=2)
    elif fmt == "junit":
        path = os.path.join(out_dir, "junit.xml")
        ET.ElementTree(junit(e, runs, execution_time)).write(path, encoding="utf-8", xml_declaration=True)
    else:
        path = os.path.join(out_dir, "grade.txt")
        with open(path, "w") as f:
            f.write(feedback.text(e, runs))
    return path

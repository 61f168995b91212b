"""Showing a run: the timeline with the programs' logs side by side, the sequence diagram (HTML
with inline SVG), and the grader's output formats."""
import html
import json
import os
import xml.etree.ElementTree as ET


# ---------------------------------------------------------------- who is who on the wire
def labels(res):
    """Map (ip, port) -> lifeline name: 'client N', 'proxy', 'server'."""
    ports = res.ports
    names = {}
    k = 0
    for c in sorted(res.conns, key=lambda c: c.start):
        if c.server_port == ports.get("proxy") and res.scenario.uses_proxy:
            k += 1
            names[c.a] = f"client {k}"
        elif c.server_port == ports.get("server"):
            if res.scenario.uses_proxy:
                names[c.a] = "proxy"
            else:
                k += 1
                names[c.a] = f"client {k}" if not hasattr(res, "raw") else f"lab {k}"
        names[c.b] = "proxy" if c.server_port == ports.get("proxy") else "server"
    return names


def seg_text(s):
    fl = "/".join(s.names)
    return f"[{fl}]" + (f" len={s.plen}" if s.plen else "")


# ---------------------------------------------------------------- timeline
def timeline(res, width=None):
    names = labels(res)
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
    for s in res.segments:
        a = names.get((s.src, s.sport), f"{s.sport}")
        b = names.get((s.dst, s.dport), f"{s.dport}")
        rows.append((s.t, "wire", f"{a} -> {b} {seg_text(s)}"))
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
            v = v if len(v) <= width else v[:width - 1] + "~"
            cells.append(f"{v:<{width}}")
        out.append(f"{(t - t0) * 1000:8.1f}  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def summary_text(res):
    out = [f"scenario {res.name}: {res.scenario.title}",
           f"ports: proxy {res.ports.get('proxy')}, server {res.ports.get('server')}; capture {res.pcap}"]
    for e in res.errors:
        out.append(f"  ERROR {e}")
    for c in res.checks:
        mark = "PASS" if c.passed else "FAIL"
        out.append(f"  {mark} {c.name:<22} {c.score:g}/{c.max_points}")
        for d in c.failures()[:4]:
            out.append(f"         - {d}")
    if res.golden is not None:
        out.append(f"  golden capture: {res.golden}")
    if res.sniff is not None:
        out.append(f"  calc-sniff verify: {res.sniff['status']}")
        for l in res.sniff.get("lines", [])[:12]:
            out.append(f"         {l}")
    out.append(f"VERDICT {res.name}: {'PASS' if res.passed else 'FAIL'}")
    return "\n".join(out)


# ---------------------------------------------------------------- sequence diagram
def sequence_svg(res):
    names = labels(res)
    lanes = []
    for s in res.segments:
        for ep in ((s.src, s.sport), (s.dst, s.dport)):
            n = names.get(ep, f"port {ep[1]}")
            if n not in lanes:
                lanes.append(n)
    order = sorted(lanes, key=lambda n: (0 if n.startswith(("client", "lab")) else 1 if n == "proxy" else 2,
                                         int(n.split()[-1]) if n.split()[-1].isdigit() else 0))
    xs = {n: 90 + i * 190 for i, n in enumerate(order)}
    step = 26
    height = 80 + step * (len(res.segments) + len(res.scenario.exchanges) + 2)
    width = 320 + 190 * max(1, len(order) - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="monospace" font-size="11">',
             '<defs><marker id="ah" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="context-stroke"/></marker></defs>']
    for n, x in xs.items():
        parts.append(f'<text x="{x}" y="20" text-anchor="middle" font-weight="bold" class="lifeline-label">'
                     f'{html.escape(n)}</text>')
        parts.append(f'<line x1="{x}" y1="28" x2="{x}" y2="{height - 10}" stroke="#999" stroke-dasharray="4,3"/>')
    y = 50
    colors = {"SYN": "#1f77b4", "FIN": "#9467bd", "RST": "#d62728", "PSH": "#2ca02c"}
    hits = _hit_times(res)
    t_hits = sorted(hits)
    msgs = _sniff_messages(res)
    for s in res.segments:
        while t_hits and t_hits[0][0] <= s.t:
            t, tag = t_hits.pop(0)
            px = xs.get("proxy", 90)
            parts.append(f'<rect x="{px + 6}" y="{y - 12}" width="{7 * len(tag) + 10}" height="18" fill="#fff3c4" stroke="#c90"/>'
                         f'<text x="{px + 10}" y="{y + 1}" class="note">{html.escape(tag)}</text>')
            y += step
        a = names.get((s.src, s.sport), f"port {s.sport}")
        b = names.get((s.dst, s.dport), f"port {s.dport}")
        x1, x2 = xs[a], xs[b]
        kind = next((k for k in ("RST", "FIN", "SYN", "PSH") if k in s.names), "ACK")
        col = colors.get(kind, "#777")
        label = seg_text(s)
        msg = msgs.get((s.src, s.sport, s.dst, s.dport, round(s.t, 5))) if s.plen else None
        title = ""
        if msg:
            label += f" {msg.get('kind', '')}"
            if msg.get("result") is not None and len(str(msg["result"])) <= 22:
                label += f" = {msg['result']}"
            elif msg.get("header", {}).get("status") in (400, 500):
                label += f" status {msg['header']['status']}"
            title = "<title>" + html.escape(json.dumps({k: msg[k] for k in ("kind", "size", "segments", "expression",
                                                         "result", "header") if k in msg})) + "</title>"
        parts.append(f'<line class="arrow" data-flags="{"/".join(s.names)}" data-len="{s.plen}" data-from="{html.escape(a)}" '
                     f'data-to="{html.escape(b)}" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{col}" '
                     f'stroke-width="{2 if s.plen or kind != "ACK" else 1}" marker-end="url(#ah)">{title}</line>')
        parts.append(f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="{col}">{html.escape(label)}</text>')
        y += step
    for t, tag in t_hits:
        px = xs.get("proxy", 90)
        parts.append(f'<text x="{px + 10}" y="{y}" class="note">{html.escape(tag)}</text>')
        y += step
    parts.append("</svg>")
    return "\n".join(parts)


def _sniff_messages(res):
    """calc-sniff --json message records keyed by (src ip, src port, dst ip, dst port, first time)."""
    conns = {r["id"]: r for r in res.sniff_json if r.get("type") == "conn"}
    out = {}
    for m in res.sniff_json:
        c = conns.get(m.get("conn")) if m.get("type") == "msg" else None
        if not c:
            continue
        a, b = c["orig"].rsplit(":", 1), c["resp"].rsplit(":", 1)
        src, dst = (a, b) if m.get("dir") == "orig" else (b, a)
        out[(src[0], int(src[1]), dst[0], int(dst[1]), round(m["ts_first"], 5))] = m
    return out


def _hit_times(res):
    """(time, note) for each exchange the proxy answered from its cache (no upstream arrow)."""
    out = []
    if not res.scenario.uses_proxy:
        return out
    front = res.ports["proxy"]
    client_conns = sorted([c for c in res.conns if c.server_port == front], key=lambda c: c.start)
    for i, (e, c) in enumerate(zip(res.scenario.exchanges, client_conns)):
        d = c.data("a")
        if e.kind == "hit" and d:
            seen = [m for m in res.sniff_json if m.get("type") == "msg" and m.get("kind") == "request"
                    and abs(m.get("ts_first", 0) - d[0].t) < 1e-5 and "upstream_connections" in m]
            why = f" ({seen[0]['upstream_connections']} upstream)" if seen else ""
            out.append((d[0].t + 1e-9, f"request {i + 1}: cache hit, no upstream{why}"))
        if e.kind == "refused" and d:
            out.append((d[0].t + 1e-9, f"request {i + 1}: server down"))
    return out


def write_html(path, results, title="calclab run"):
    body = []
    for res in results:
        verdict = "PASS" if res.passed else "FAIL"
        body.append(f'<section><h2>Scenario {html.escape(res.name)}: {html.escape(res.scenario.title)} '
                    f'<span class="{verdict.lower()}">{verdict}</span></h2>')
        body.append(sequence_svg(res))
        body.append("<table><tr><th>check</th><th>score</th><th>details</th></tr>")
        for c in res.checks:
            body.append(f'<tr class="{"pass" if c.passed else "fail"}"><td>{html.escape(c.name)}</td>'
                        f'<td>{c.score:g}/{c.max_points}</td><td>'
                        + "<br>".join(html.escape(d) for _, d in c.items) + "</td></tr>")
        body.append("</table></section>")
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} .pass{{color:#080}} .fail{{color:#b00}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}}
section{{margin-bottom:2em}}</style></head>
<body><h1>{html.escape(title)}</h1>
{''.join(body)}
</body></html>
"""
    with open(path, "w") as f:
        f.write(doc)


# ---------------------------------------------------------------- grading formats
def grade_tests(results):
    """One test per (scenario, check)."""
    tests = []
    for res in results:
        for c in res.checks:
            out = "\n".join(("ok   " if ok else "FAIL ") + d for ok, d in c.items)
            tests.append({"name": f"{res.name} {c.name}", "score": c.score, "max_score": c.max_points,
                          "status": "passed" if c.passed else "failed", "output": out, "visibility": "visible"})
        if res.sniff and res.sniff.get("status") in ("pass", "fail", "inconclusive"):
            tests.append({"name": f"{res.name} calc-sniff verify", "score": 0, "max_score": 0,
                          "status": "passed" if res.sniff["status"] == "pass" else "failed",
                          "output": "\n".join(res.sniff.get("lines", [])), "visibility": "visible"})
        for e in res.errors:
            tests.append({"name": f"{res.name} programs", "score": 0, "max_score": 0, "status": "failed",
                          "output": e, "visibility": "visible"})
    return tests


def write_grade(out_dir, fmt, results, execution_time):
    os.makedirs(out_dir, exist_ok=True)
    tests = grade_tests(results)
    score = round(sum(t["score"] for t in tests), 3)
    max_score = sum(t["max_score"] for t in tests)
    if fmt == "gradescope":
        path = os.path.join(out_dir, "results.json")
        with open(path, "w") as f:
            json.dump({"score": score, "execution_time": round(execution_time, 3), "output":
                       f"calclab grade: {score:g}/{max_score} points", "visibility": "visible", "tests": tests},
                      f, indent=2)
    elif fmt == "json":
        path = os.path.join(out_dir, "grade.json")
        with open(path, "w") as f:
            json.dump({"score": score, "max_score": max_score, "execution_time": round(execution_time, 3),
                       "passed": all(t["status"] == "passed" for t in tests),
                       "scenarios": [r.to_dict() for r in results]}, f, indent=2)
    elif fmt == "junit":
        path = os.path.join(out_dir, "junit.xml")
        suites = ET.Element("testsuites", name="calclab grade", tests=str(len(tests)),
                            failures=str(sum(t["status"] != "passed" for t in tests)),
                            time=f"{execution_time:.3f}")
        for res in results:
            mine = [t for t in tests if t["name"].startswith(res.name + " ")]
            suite = ET.SubElement(suites, "testsuite", name=f"scenario {res.name}", tests=str(len(mine)),
                                  failures=str(sum(t["status"] != "passed" for t in mine)), errors="0",
                                  time=f"{res.duration:.3f}")
            for t in mine:
                case = ET.SubElement(suite, "testcase", classname=f"calclab.scenario_{res.name.replace('.', '_')}",
                                     name=t["name"].split(" ", 1)[1], time="0")
                ET.SubElement(case, "system-out").text = f"score {t['score']:g}/{t['max_score']}\n{t['output']}"
                if t["status"] != "passed":
                    ET.SubElement(case, "failure", message=f"{t['name']}: {t['score']:g}/{t['max_score']}",
                                  type="check").text = t["output"]
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    else:
        path = os.path.join(out_dir, "grade.txt")
        lines = []
        for t in tests:
            lines.append(f"{'PASS' if t['status'] == 'passed' else 'FAIL'} {t['name']:<32} {t['score']:g}/{t['max_score']}")
            if t["status"] != "passed":
                lines += ["     " + l for l in t["output"].splitlines() if l.startswith("FAIL")][:5]
        lines.append(f"TOTAL {score:g}/{max_score}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    return path, score, max_score

"""No file of src/ in an import circle: neither its #includes nor its calls go round.

usage: check_import_cycles.py SOURCE_DIR BUILD_DIR

Two graphs over the files of src/ (and include/), each checked for circles (strongly connected
components of more than one file):
  - includes: a file names another in a quoted #include (headers and sources alike);
  - calls: an object file of src/ uses a symbol (function or data) another object file of
    src/ defines, as `nm` lists them in BUILD_DIR (so only what the build really links counts,
    static and inline functions not at all). A symbol defined by several programs' files
    (each program's own `main`, say) links each user to the definer of its own program.
Why: a file that needs a second which needs the first cannot be read, tested or replaced on its
own; a reader following one call ends up back where they started. Prints each circle with the
edges that make it and exits 1, or prints the counts and exits 0."""
import collections
import pathlib
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sccs(nodes, edges):
    """Tarjan's strongly connected components (iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def include_graph(src):
    files = [p for d in ("src", "include") for p in (src / d).rglob("*") if p.suffix in (".c", ".h")]
    dirs = [src / "include", *sorted({p.parent for p in files})]
    edges = collections.defaultdict(set)
    for f in files:
        for name in INCLUDE.findall(f.read_text(errors="replace")):
            for d in (f.parent, *dirs):
                t = d / name
                if t.exists():
                    edges[str(f.relative_to(src))].add(str(t.resolve().relative_to(src.resolve())))
                    break
    return {str(f.relative_to(src)) for f in files}, edges


def symbol_graph(src, build):
    objs = {}
    for o in build.glob("CMakeFiles/*.dir/src/**/*.o"):
        parts = o.relative_to(build).parts  # CMakeFiles, TARGET.dir, src, ..., NAME.c.o
        name = "/".join(parts[2:])[:-2]
        if (src / name).exists():  # not the stale object of a file since moved or removed
            objs[o] = (parts[1], name)
    defs, undefs = collections.defaultdict(set), collections.defaultdict(set)
    for o, (target, name) in objs.items():
        out = subprocess.run(["nm", "-P", str(o)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            sym, kind = parts[0], parts[1]
            if kind == "U":
                undefs[name].add(sym)
            elif kind in "TDBRVWCG":  # global definitions (lower case: local to the file)
                defs[sym].add((target, name))
    target_of = {name: target for target, name in objs.values()}
    edges = collections.defaultdict(set)
    for name, syms in undefs.items():
        for s in syms:
            definers = defs.get(s, set())
            if len(definers) > 1:  # one per program: the user's own program's
                definers = {d for d in definers if d[0] == target_of[name]} or definers
            for _, d in definers:
                if d != name:
                    edges[name].add(d)
    return set(target_of), edges


def report(what, nodes, edges):
    circles = sccs(nodes, edges)
    for comp in circles:
        print(f"{what} circle: {' <-> '.join(comp)}")
        for a in comp:
            for b in sorted(edges.get(a, ())):
                if b in comp:
                    print(f"  {a} -> {b}")
    nedges = sum(len(v) for v in edges.values())
    print(f"{what}: {len(nodes)} files, {nedges} edges, {len(circles)} circles")
    return len(circles)


def main():
    src, build = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    n = report("includes", *include_graph(src))
    nodes, edges = symbol_graph(src, build)
    if not nodes:
        print(f"no object files of src/ under {build}/CMakeFiles: build first")
        return 2
    n += report("calls", nodes, edges)
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenarios as data: TOML files (docs/scenario-files.md), the built-in ones in lab/scenarios/.

A scenario file says what happens: the roles in play, the server's cache control, and its steps
in order (a client's request, several clients at once, a pause, a program stopped, the lab's
own bad requests).  What every exchange must be on the wire follows from the reference's rules
(docs/protocol.md section 5), worked out here by a small model, never written in the file:
  direct   client -> server
  miss     client -> proxy, exactly one upstream connection proxy -> server with the same bytes
  hit      client -> proxy, no upstream connection at all
  refused  client -> proxy, the proxy's SYN to the server answered by RST, 170-byte error answer
Every Scenario is immutable; loading the same file twice gives equal objects."""
import dataclasses
import functools
import hashlib
import json
import math
import os
import tomllib

from . import oracle, paths

FOREVER = 65535
BUILTIN_DIR = os.path.join(paths.ROOT, "lab", "scenarios")
# the report's expressions: a file's `ask = "E1"` means these unless its [expressions] says otherwise
REPORT_EXPRESSIONS = (("E1", "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"),
                      ("E2", "max(2, 3) + 3"))
GRADABLE = ("3.1", "3.2", "3.3")
# the order lab/scenario lists the built-ins in; any other file in lab/scenarios/ comes after
_BUILTIN_ORDER = ("3.1", "3.2", "3.3", "stale", "reload", "concurrent", "errors", "no-steps", "malformed")
# a pause is measured in whole seconds by the programs' clocks, and an exchange takes time too:
# an age is known only within [floor(pause), floor(pause + SLACK) + 1]
AGE_SLACK = 0.5


class ScenarioError(Exception):
    """A scenario file that cannot be played: unreadable, unknown keys, or steps whose outcome the
    reference's rules leave to chance."""


@dataclasses.dataclass(frozen=True)
class Client:
    """One exchange (or `count` alike, started at once): the request a client sends and the kind
    of exchange the reference's rules give it."""
    expr: str                 # the expression the client is given
    label: str                # how reports name it: E1, or the expression in quotes
    kind: str                 # direct, miss, hit, refused
    steps: bool = True
    cache: bool = True
    max_age: int = FOREVER
    count: int = 1

    @property
    def front(self):
        return "server" if self.kind == "direct" else "proxy"

    @property
    def example(self):
        """Compatibility: the {example} placeholder of command templates (1 or 2 for E1 or E2)."""
        return {"E1": 1, "E2": 2}.get(self.label, self.label)

    @property
    def flags(self):
        """calc-client's options for the request's flags ({client_flags} in a template)."""
        out = [] if self.steps else ["--no-steps"]
        return out + (["--no-cache"] if not self.cache else [])

    def describe(self):
        extra = [x for x, on in (("no steps", not self.steps), ("no cache", not self.cache),
                                 (f"max-age {self.max_age}", self.cache and self.max_age != FOREVER)) if on]
        return f"{self.label}{' (' + ', '.join(extra) + ')' if extra else ''}"


@dataclasses.dataclass(frozen=True)
class Stop:
    role: str


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Raw:
    """The malformed scenario: the harness itself sends the reference's bad requests."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    roles: tuple
    actions: tuple
    server_cache_control: int = FOREVER
    golden: bool = True          # judged against a golden capture (not the malformed one)
    source: str = None           # the file it was read from
    builtin: bool = False        # one of lab/scenarios/ (a recorded golden may exist in captures/)

    @property
    def exchanges(self):
        out = []
        for a in self.actions:
            if isinstance(a, Client):
                out += [a] * a.count
        return out

    @property
    def uses_proxy(self):
        return "proxy" in self.roles

    @property
    def digest(self):
        """What the scenario plays, hashed: equal scenarios (whatever file or name) share a golden."""
        body = json.dumps([list(self.roles), self.server_cache_control,
                           [[type(a).__name__, dataclasses.asdict(a)] for a in self.actions]], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the reference's cache, as a model

def _ages(elapsed):
    """Every whole-second age an entry stored `elapsed` seconds of pauses ago may show."""
    return range(math.floor(elapsed), math.floor(elapsed + AGE_SLACK) + 2)


def _fresh(cc, age):
    return cc == FOREVER or cc - age > 0


def _decide(what, verdicts):
    """One verdict for every possible age, or the scenario leaves it to chance."""
    got = {v for _, v in verdicts}
    if len(got) != 1:
        shown = ", ".join(f"age {a} s: {'yes' if v else 'no'}" for a, v in verdicts)
        raise ScenarioError(f"{what} depends on timing ({shown}): keep pauses at least a second away from "
                            "the max-ages involved")
    return got.pop()


def kinds(roles, server_cc, steps):
    """The kind of every exchange of `steps` (Client-like requests with .expr .steps .cache
    .max_age .count .to, Stop, Sleep, Raw) under the reference's rules (docs/protocol.md section 5):
    the cache key is the request's payload with its steps flag; a request with the cache flag
    and a max-age > 0 is a hit while the entry's age leaves both the server's cache control and
    the client's max-age time remaining; otherwise the proxy forwards it on a new upstream
    connection (a miss; refused once the server is stopped) and stores the answer when the
    request's cache flag, the answer's (the server's cache control > 0) and both remaining
    times allow.  Error answers are stored like any other.  Returns a list of kinds per step
    (None for steps that are not requests)."""
    cache, clock, up = {}, 0.0, {"server": "server" in roles, "proxy": "proxy" in roles}
    out = []
    for n, st in enumerate(steps, 1):
        where = f"step {n}"
        if isinstance(st, Stop):
            if not up.get(st.role):
                raise ScenarioError(f"{where}: stops the {st.role}, which is not running")
            up[st.role] = False
            out.append(None)
            continue
        if isinstance(st, Sleep):
            clock += st.seconds
            out.append(None)
            continue
        if isinstance(st, Raw):
            if not up["server"]:
                raise ScenarioError(f"{where}: the bad requests go to the server, which is not running")
            out.append(None)
            continue
        if not up[st.to]:
            raise ScenarioError(f"{where}: asks the {st.to}, which is " +
                                ("stopped" if st.to in roles else "not in the scenario's roles"))
        if st.to == "server":
            out.append("direct")
            continue
        key = (oracle.canonical(st.expr), st.steps)
        cc = st.max_age if st.cache else 0
        kind = None
        if cc != 0 and key in cache:
            age = clock - cache[key]
            hit = _decide(f"{where}: whether {st.expr!r} is answered from the proxy's cache",
                          [(a, _fresh(server_cc, a) and _fresh(cc, a)) for a in _ages(age)])
            kind = "hit" if hit else None
        if kind is None:
            kind = "miss" if up["server"] else "refused"
            stores = kind == "miss" and st.cache and server_cc != 0 and _decide(
                f"{where}: whether the proxy stores the answer to {st.expr!r}",
                [(a, _fresh(server_cc, a) and _fresh(cc, a)) for a in _ages(0.0)])
            if stores:
                if st.count > 1:
                    raise ScenarioError(
                        f"{where}: {st.count} clients at once ask {st.expr!r}, which the proxy's cache does not "
                        "hold: whether the later ones are hits depends on timing (ask it once before them, or "
                        "with max-age 0)")
                cache[key] = clock
        out.append(kind)
    return out


# ---------------------------------------------------------------- files

@dataclasses.dataclass(frozen=True)
class _Ask:
    expr: str
    label: str
    steps: bool
    cache: bool
    max_age: int
    count: int
    to: str


_STEP_KEYS = {"ask": None, "steps": bool, "cache": bool, "max-age": int, "clients": int, "to": str}
_TOP_KEYS = {"title", "roles", "server-cache-control", "expressions", "steps", "description"}


def _fail(where, why):
    raise ScenarioError(f"{where}: {why}")


def _step(where, raw, exprs, roles):
    if not isinstance(raw, dict):
        _fail(where, "a step is a table ([[steps]])")
    for bad in ("kind", "expect", "expected", "prints"):
        if bad in raw:
            _fail(where, f"'{bad}' is not written in a scenario file: what every exchange must be follows "
                         "from the reference's rules")
    what = [k for k in ("ask", "pause", "stop", "bad-requests") if k in raw]
    if len(what) != 1:
        _fail(where, "a step has exactly one of ask, pause, stop, bad-requests")
    k = what[0]
    if k != "ask":
        extra = set(raw) - {k}
        if extra:
            _fail(where, f"{k} takes no {', '.join(sorted(extra))}")
        v = raw[k]
        if k == "pause":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60:
                _fail(where, "pause is a number of seconds, 0 to 60")
            return Sleep(float(v))
        if k == "stop":
            if v not in ("server", "proxy"):
                _fail(where, "stop takes \"server\" or \"proxy\"")
            return Stop(v)
        if v is not True:
            _fail(where, "bad-requests = true")
        return Raw()
    unknown = set(raw) - set(_STEP_KEYS)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(_STEP_KEYS)})")
    for key, typ in _STEP_KEYS.items():
        if typ and key in raw and (not isinstance(raw[key], typ) or typ is int and isinstance(raw[key], bool)):
            _fail(where, f"{key} is a{'n integer' if typ is int else ' ' + typ.__name__}")
    text = raw["ask"]
    if not isinstance(text, str) or not text.strip():
        _fail(where, "ask is an expression, or the name of one of [expressions]")
    label = text if text in exprs else None
    expr = exprs.get(text, text)
    max_age, count = raw.get("max-age", FOREVER), raw.get("clients", 1)
    if not 0 <= max_age <= FOREVER:
        _fail(where, f"max-age is 0 to {FOREVER} (forever)")
    if not 1 <= count <= 32:
        _fail(where, "clients is 1 to 32")
    to = raw.get("to", "proxy" if "proxy" in roles else "server")
    if to not in ("server", "proxy"):
        _fail(where, "to is \"server\" or \"proxy\"")
    try:
        a = oracle.answer(expr, True)
    except oracle.OracleError as e:
        _fail(where, f"calc-client does not take the expression: {e}")
    if not a.get("deterministic", True):
        _fail(where, f"{expr!r} uses rand: its answer cannot be known ahead")
    if label is None:
        label = f"'{a['expression']}'"
    return _Ask(expr, label, raw.get("steps", True), raw.get("cache", True), max_age, count, to)


def parse(text, name, source=None, builtin=False):
    """A Scenario from a scenario file's text (docs/scenario-files.md); ScenarioError says why not."""
    where = source or name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        _fail(where, f"not TOML: {e}")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP_KEYS))})")
    roles = doc.get("roles", ["server", "proxy"])
    if not isinstance(roles, list) or not roles or any(r not in ("server", "proxy") for r in roles) \
            or len(set(roles)) != len(roles):
        _fail(where, "roles is a list of \"server\" and \"proxy\" (the client is always there)")
    if "proxy" in roles and "server" not in roles:
        _fail(where, "a proxy needs a server behind it")
    roles = tuple(r for r in ("server", "proxy") if r in roles)
    cc = doc.get("server-cache-control", FOREVER)
    if isinstance(cc, bool) or not isinstance(cc, int) or not 0 <= cc <= FOREVER:
        _fail(where, f"server-cache-control is 0 to {FOREVER} (forever)")
    exprs = dict(REPORT_EXPRESSIONS)
    named = doc.get("expressions", {})
    if not isinstance(named, dict) or any(not isinstance(v, str) for v in named.values()):
        _fail(where, "[expressions] maps names to expressions (strings)")
    exprs.update(named)
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        _fail(where, "no [[steps]]")
    steps = [_step(f"{where}: step {n}", s, exprs, roles) for n, s in enumerate(raw_steps, 1)]
    has_raw = any(isinstance(s, Raw) for s in steps)
    if has_raw and any(isinstance(s, _Ask) for s in steps):
        _fail(where, "bad-requests is a scenario of its own: no client requests with it")
    try:
        ks = kinds(roles, cc, steps)
    except ScenarioError as e:
        _fail(where, str(e))
    actions = tuple(Client(s.expr, s.label, k, s.steps, s.cache, s.max_age, s.count) if isinstance(s, _Ask) else s
                    for s, k in zip(steps, ks))
    title = doc.get("title")
    if title is None:
        title = ", ".join(f"{a.describe()}{f' x{a.count} at once' if a.count > 1 else ''} ({a.kind})"
                          if isinstance(a, Client) else f"{a.role} stopped" if isinstance(a, Stop)
                          else f"pause {a.seconds:g} s" if isinstance(a, Sleep) else "bad requests"
                          for a in actions)
    if not isinstance(title, str):
        _fail(where, "title is a string")
    return Scenario(name, title, roles, actions, cc, golden=not has_raw, source=source, builtin=builtin)


def load(path, builtin=False):
    """The scenario in file `path`, named for the file (3.2.toml is scenario 3.2)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read: {e}")
    name = os.path.basename(path)
    name = name[:-len(".toml")] if name.endswith(".toml") else name
    return parse(text, name, source=os.path.abspath(path), builtin=builtin)


def _builtin_files():
    try:
        names = [f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".toml")]
    except OSError:
        return ()
    return tuple(sorted(names, key=lambda n: (_BUILTIN_ORDER.index(n) if n in _BUILTIN_ORDER else 99, n)))


BUILTIN_NAMES = _builtin_files()


# The built-ins are files of the checkout, read once per process: a Scenario is immutable and
# loading a file twice gives an equal one, so the cache only saves the parse.
@functools.lru_cache(maxsize=None)
def builtin(name):
    if name not in BUILTIN_NAMES:
        raise ScenarioError(f"unknown scenario {name!r} (built-in: {', '.join(BUILTIN_NAMES)}; or a .toml file "
                            "or a folder of them)")
    return load(os.path.join(BUILTIN_DIR, name + ".toml"), builtin=True)


def resolve(specs):
    """Scenarios from `specs` (a comma-separated string or a list): built-in names, scenario files,
    folders of them (their .toml files in name order).  Two scenarios may not share a name."""
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    out = []
    for s in specs:
        if isinstance(s, Scenario):
            out.append(s)
        elif s in BUILTIN_NAMES:   # a built-in's name, whatever files the current folder holds
            out.append(builtin(s))
        elif os.path.isdir(s):
            files = sorted(f for f in os.listdir(s) if f.endswith(".toml"))
            if not files:
                raise ScenarioError(f"{s}: no .toml scenario files")
            out += [load(os.path.join(s, f)) for f in files]
        elif s.endswith(".toml") or os.sep in s or os.path.isfile(s):
            out.append(load(s))
        else:
            out.append(builtin(s))
    if not out:
        raise ScenarioError("no scenarios")
    seen = {}
    for scn in out:
        if scn.name in seen and seen[scn.name] != scn:
            raise ScenarioError(f"two scenarios named {scn.name!r}: {seen[scn.name].source} and {scn.source}")
        seen[scn.name] = scn
    return list({s.name: s for s in out}.values())


class _Builtins:
    """A read-only name -> Scenario view of the built-ins, each file read when first asked for.
    It holds nothing of its own (no item can be set), so SCENARIOS is a constant."""

    def __getitem__(self, name):
        try:
            return builtin(name)
        except ScenarioError:
            raise KeyError(name)

    def __contains__(self, name):
        return name in BUILTIN_NAMES

    def __iter__(self):
        return iter(BUILTIN_NAMES)

    def __len__(self):
        return len(BUILTIN_NAMES)

    def keys(self):
        return list(BUILTIN_NAMES)

    def items(self):
        return [(n, builtin(n)) for n in BUILTIN_NAMES]

    def values(self):
        return [builtin(n) for n in BUILTIN_NAMES]


SCENARIOS = _Builtins()


def protocol_vectors():
    with open(os.path.join(paths.VECTORS, "legacy-protocol.jsonl")) as f:
        return [v for v in map(json.loads, f) if v["kind"] == "server" and v["response"]]

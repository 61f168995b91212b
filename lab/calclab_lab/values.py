"""Read-only values for the grader's pipeline (play -> judge -> score -> outputs).

Each stage hands the next one values it cannot change: frozen dataclasses, tuples, and
calc-sniff's JSON records frozen by freeze() into read-only mappings and tuples.  A stage that
has something to add makes a new value (dataclasses.replace) instead of changing its input, so
what a run played and what a judgement said stay what they were wherever they are read.
thaw() turns a frozen value back into plain dicts and lists where JSON is written."""
import dataclasses
from collections.abc import Mapping
from types import MappingProxyType


def freeze(x):
    """`x` (JSON-like: dicts, lists, scalars) as read-only mappings and tuples, all the way down."""
    if isinstance(x, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return tuple(freeze(v) for v in x)
    return x


def thaw(x):
    """A frozen value as plain dicts and lists (what json.dump takes)."""
    if isinstance(x, Mapping):
        return {k: thaw(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [thaw(v) for v in x]
    return x


class Fields:
    """Read access by name to a frozen dataclass's fields, as the dicts it replaces were read
    (rec["stdout"], rec.get("t1")); nothing can be assigned through it."""

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key) if key in self.keys() else default

    def __contains__(self, key):
        return key in self.keys()

    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    def items(self):
        return {k: getattr(self, k) for k in self.keys()}.items()

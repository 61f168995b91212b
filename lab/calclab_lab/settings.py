"""What one grading is set up with, decided once by its entry point (lab/grade, lab/scenario,
lab/demo, a test) and handed down to what runs the programs: which Python runs the students'
programs, which of the grader's own folders the isolation line watches, and whether programs
may run unconfined where nothing can confine them.  A Lab is frozen; another set-up is another
Lab (dataclasses.replace), never a change to this one."""
import dataclasses
import os

from . import interp, paths

# the environment's way to say --allow-unconfined (a platform's grader, the test suite)
ALLOW_ENV = "CALCLAB_ALLOW_UNCONFINED"


@dataclasses.dataclass(frozen=True)
class Lab:
    # the interpreter of the students' programs ({py} in the templates, the hand-ins, the syntax
    # check): a sandbox shows its installation read-only; goldens and replays follow its flavour
    python: interp.Interpreter
    # the grader's own folders (the checkout, a class folder, a hand-in): at the uid level only
    # permissions keep the programs out of them, and the isolation line names those open to others
    grader_paths: tuple = (paths.ROOT,)
    # where neither namespaces nor the uid switch can confine the programs, run them anyway
    # (--allow-unconfined) instead of refusing to grade; unsaid, as the environment says
    allow_unconfined: bool = dataclasses.field(default_factory=lambda: unconfined_by_environment())

    @classmethod
    def create(cls, python=None, grader_paths=(), allow_unconfined=None):
        """The set-up with `python` (a path or a name on PATH; default the system's python3,
        paths.PY), the checkout plus `grader_paths` (None entries ignored) and
        `allow_unconfined` (default: whether $CALCLAB_ALLOW_UNCONFINED is 1).  InterpreterError
        when the interpreter cannot be asked."""
        if allow_unconfined is None:
            allow_unconfined = unconfined_by_environment()
        return cls(interp.probe(python or paths.PY), folders((paths.ROOT,) + tuple(grader_paths)),
                   bool(allow_unconfined))

    @property
    def flavour(self):
        """How the students' Python pickles enum members (interp.BY_VALUE or GETATTR)."""
        return self.python.flavour


def unconfined_by_environment():
    return os.environ.get(ALLOW_ENV) == "1"


def folders(names):
    """`names` made absolute, without None entries and repeats, in order."""
    return tuple(dict.fromkeys(os.path.abspath(p) for p in names if p))

"""What one grading is set up with, decided once by its entry point (lab/grade, lab/scenario,
lab/demo, a test) and handed down to what runs the programs: which Python runs the students'
programs and which of the grader's own folders the isolation line watches.  A Lab is frozen;
another set-up is another Lab (dataclasses.replace), never a change to this one."""
import dataclasses
import os

from . import interp, paths


@dataclasses.dataclass(frozen=True)
class Lab:
    # the interpreter of the students' programs ({py} in the templates, the hand-ins, the syntax
    # check): a sandbox shows its installation read-only; goldens and replays follow its flavour
    python: interp.Interpreter
    # the grader's own folders (the checkout, a class folder, a hand-in): at the uid level only
    # permissions keep the programs out of them, and the isolation line names those open to others
    grader_paths: tuple = (paths.ROOT,)

    @classmethod
    def create(cls, python=None, grader_paths=()):
        """The set-up with `python` (a path or a name on PATH; default the system's python3,
        paths.PY) and the checkout plus `grader_paths` (None entries ignored).  InterpreterError
        when the interpreter cannot be asked."""
        return cls(interp.probe(python or paths.PY), folders((paths.ROOT,) + tuple(grader_paths)))

    @property
    def flavour(self):
        """How the students' Python pickles enum members (interp.BY_VALUE or GETATTR)."""
        return self.python.flavour


def folders(names):
    """`names` made absolute, without None entries and repeats, in order."""
    return tuple(dict.fromkeys(os.path.abspath(p) for p in names if p))

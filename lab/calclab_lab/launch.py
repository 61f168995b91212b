"""Start a student's program from its own folder with a given standard input, then get out of the
way (exec: the program keeps this process, its group and its signals).

    python3 -I -S launch.py --cwd DIR [--stdin TEXT] -- PROGRAM ARGS...

Run with -I -S: it imports nothing beyond os and sys, so it adds a few milliseconds per start."""
import os
import sys

STDIN_MAX = 60000   # below a pipe's capacity: written whole before the program starts reading


def main(argv):
    cwd, stdin = None, None
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt in ("--cwd", "--stdin") and argv:
            val = argv.pop(0)
            if opt == "--cwd":
                cwd = val
            else:
                stdin = val
        else:
            print(f"launch.py: bad option {opt!r}", file=sys.stderr)
            return 2
    cmd = argv[1:]
    if not cmd:
        print("launch.py: no program after --", file=sys.stderr)
        return 2
    if cwd:
        os.chdir(cwd)
    if stdin is not None:
        data = stdin.encode()
        if len(data) > STDIN_MAX:
            print(f"launch.py: stdin text over {STDIN_MAX} bytes", file=sys.stderr)
            return 2
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        os.dup2(r, 0)
        os.close(r)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"launch.py: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

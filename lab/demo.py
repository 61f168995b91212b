#!/usr/bin/env python3
"""lab/demo: see lab/calclab_lab/cli.py (demo_main)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calclab_lab.cli import demo_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(demo_main())

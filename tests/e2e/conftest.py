"""Shared pytest fixtures for calclab's end-to-end tests.

Keep this file minimal: each engineer adds only what several test files share.
"""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# The reference vectors live in the checkout; $CALC_VECTORS names another copy explicitly.
VECTORS = pathlib.Path(os.environ.get("CALC_VECTORS") or REPO / "captures" / "vectors")


# The suite's programs are its own (the hostile ones run only where the sandbox confines them:
# test_sandbox*.py skip otherwise), so on a machine where nothing can confine programs the lab's
# refusal to run unconfined code must not stop every test; the tests of that refusal unset it.
os.environ.setdefault("CALCLAB_ALLOW_UNCONFINED", "1")


def build_dir() -> pathlib.Path:
    """The CMake build directory: $CALC_BUILD_DIR, else <repo>/build."""
    return pathlib.Path(os.environ.get("CALC_BUILD_DIR", REPO / "build"))


def build_exe(name: str) -> pathlib.Path:
    """Path of an executable built in build_dir(); fails the test when it was not built."""
    p = build_dir() / name
    if not p.exists():
        pytest.fail(f"{p} not built (set CALC_BUILD_DIR)")
    return p


@pytest.fixture
def procs(tmp_path):
    """Our programs started by one test (calcproc.Procs), all stopped after it."""
    from calcproc import Procs   # calcproc imports this file: not at the top
    p = Procs(tmp_path)
    yield p
    p.stop_all()


@pytest.fixture(scope="session")
def vectors_dir() -> pathlib.Path:
    return VECTORS


def pytest_configure(config):
    # Tests that never touch build/ (the student Python implementation, the lab's own logic):
    # ci/test runs them in the release pass and deselects them in the sanitizer pass.
    config.addinivalue_line("markers", "build_independent: does not use the C build")

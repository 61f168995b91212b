"""The project's copy of the reference vectors (captures/vectors) is the recorded one.

captures/vectors/SHA256SUMS records each file's digest when it was taken from the reference, so a
regenerated or hand-edited vectors file fails here. Where the team's copy of the vectors sits
beside the checkout (../shared/vectors, or $CALCLAB_SHARED_VECTORS), the two must be byte-identical:
this is the one place that may look outside the repository, and only to compare."""
import hashlib
import json
import os
import pathlib

import pytest

from conftest import REPO

pytestmark = pytest.mark.build_independent

OURS = REPO / "captures" / "vectors"
# The two made under CPython 3.11.2 (Debian 12's python3) pickle enum members by name.
NAMES = ("legacy-expressions.jsonl", "legacy-protocol.jsonl",
         "legacy-expressions-py3.11.2.jsonl", "legacy-protocol-py3.11.2.jsonl")


def test_every_copied_file_has_a_recorded_digest():
    assert set(recorded_digests()) == set(NAMES)
    assert {p.name for p in OURS.glob("*.jsonl")} == set(NAMES)


def recorded_digests():
    sums = {}
    for line in (OURS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


@pytest.mark.parametrize("name", NAMES)
def test_copy_matches_its_recorded_digest(name):
    data = (OURS / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded_digests()[name]
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert len(rows) > 10 and all("name" in r for r in rows)


def _team_copy():
    env = os.environ.get("CALCLAB_SHARED_VECTORS")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "vectors"


@pytest.mark.parametrize("name", NAMES)
def test_copy_equals_the_team_copy_when_present(name):
    theirs = _team_copy() / name
    if not theirs.exists():
        pytest.skip(f"no team copy at {theirs}: only the recorded digest is checked")
    assert (OURS / name).read_bytes() == theirs.read_bytes(), (
        f"captures/vectors/{name} differs from {theirs}: copy the new file and update SHA256SUMS")

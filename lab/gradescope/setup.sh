#!/usr/bin/env bash
# Gradescope's setup.sh (lab/gradescope-bundle puts it at the root of autograder.zip, which Gradescope
# unpacks into /autograder/source): run once, as root, while the autograder image is built, with the
# network available. Installs what calclab needs with apt and builds it once.
set -eu
exec sh "$(cd "$(dirname "$0")" && pwd)/lab/gradescope/install-grader"

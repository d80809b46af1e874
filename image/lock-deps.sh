#!/bin/bash
# Re-resolve the station's runtime dependencies for the image (CPython 3.11, linux aarch64, binary wheels
# only) and write them, pinned, to image/requirements-arm64.lock.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
repo=$(dirname "$here")
pip=${PIP:-$repo/.venv/bin/pip}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$pip" wheel -q --no-deps -w "$work/project" "$repo"
"$pip" download -q --only-binary=:all: --python-version 311 --implementation cp \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    --platform linux_aarch64 -d "$work/deps" "$work"/project/*.whl
{
    echo "# The station's Python dependencies in the image, pinned (resolved for CPython 3.11 on linux aarch64)."
    echo "# Regenerate with image/lock-deps.sh after changing pyproject.toml; image/build.sh installs exactly these."
    for wheel in "$work"/deps/*.whl; do
        name=$(basename "$wheel")
        case $name in records_terminal-*) continue ;; esac
        # name-version-...: the wheel name's first two fields, normalised the way pip compares them.
        echo "$name" | sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' | tr '_A-Z' '-a-z'
    done
} > "$here/requirements-arm64.lock"
echo "wrote $here/requirements-arm64.lock"

#!/usr/bin/env bash
# Checks that every C source and header follows .clang-format (run by ctest as 'format').
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null 2>&1; then
    echo "format-check: clang-format is not installed (deploy/install-deps.sh installs it)" >&2
    exit 1
fi
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common worker coordinator device-agent tests -name '*.[ch]')
clang-format --dry-run --Werror $files
echo "format-check: $(echo "$files" | wc -w) files formatted as .clang-format says"

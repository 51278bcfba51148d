#!/usr/bin/env bash
# tests/tools/longest.sh — the longest C functions in the tree, measured as the code review
# measures them: Universal Ctags end line minus start line (ctags --fields=+ne).
#
#   tests/tools/longest.sh [N] [DIR]    the N longest (default 15) under DIR (default: the repo)
set -euo pipefail
n=${1:-15}
dir=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$dir"
git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^tests/fuzz/corpus' |
    ctags --fields=+ne --kinds-C=f -L - -o - 2>/dev/null |
    awk -F'\t' '{
        line = 0; end = 0
        for (i = 4; i <= NF; i++) {
            if ($i ~ /^line:/) line = substr($i, 6)
            if ($i ~ /^end:/) end = substr($i, 5)
        }
        if (end > 0) printf "%d\t%s:%d\t%s\n", end - line + 1, $2, line, $1
    }' | sort -k1,1nr | head -n "$n"

#!/usr/bin/env bash
# Does autopeft still pass on the newest releases of its dependencies?
#
#   scripts/check_latest.sh [PYTEST ARGS]            newest of everything (no constraints.txt) in a throwaway
#                                                    venv: what moved against the lock, then ruff, mypy, pytest
#   scripts/check_latest.sh --refresh [PYTEST ARGS]  the same, and when all three pass, rewrite constraints.txt
#                                                    (its header kept) from `pip freeze` of that venv
#
# The venv lives in a temp dir, removed at the end unless KEEP_VENV=1. torch stays at the CPU build
# (TORCH=torch==2.13.0); PYTHON picks the interpreter (python3). Exits non-zero when something broke.
set -euo pipefail
cd "$(dirname "$0")/.."

refresh=0
if [[ ${1:-} == --refresh ]]; then refresh=1; shift; fi
if [[ $refresh == 1 && $# -gt 0 ]]; then echo "--refresh runs the whole suite: no pytest arguments" >&2; exit 2; fi
tmp=$(mktemp -d)
if [[ ${KEEP_VENV:-0} == 1 ]]; then echo "venv kept in $tmp/venv"; else trap 'rm -rf "$tmp"' EXIT; fi
venv=$tmp/venv

"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${TORCH:-torch==2.13.0}" -e '.[dev]'
# The lock's body: everything installed (--all: setuptools too, which torch needs) but pip, torch (pinned on
# the command line), nvidia-* (CUDA builds of torch bring those) and autopeft itself (--exclude-editable;
# pip still writes a comment for it).
"$venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^#' | grep -viE '^(pip|torch|nvidia-[^=]*)==' \
    > "$tmp/freeze.txt"

echo "== newest releases against constraints.txt"
awk -F'==' 'NR == FNR { if ($0 !~ /^#/ && NF == 2) locked[tolower($1)] = $2; next }
            { n = tolower($1); seen[n] = 1; was = (n in locked) ? locked[n] : "(new)"
              if (was != $2) printf "  %-28s %s -> %s\n", $1, was, $2 }
            END { for (n in locked) if (!(n in seen)) printf "  %-28s %s -> (gone)\n", n, locked[n] }' \
    constraints.txt "$tmp/freeze.txt"

status=()
run() {  # run NAME COMMAND...: run it, remember whether it passed
    local name=$1; shift
    echo "== $name"
    if "$@"; then status+=("$name: ok"); else status+=("$name: FAILED"); fi
}
run ruff "$venv/bin/ruff" check autopeft tests benchmarks examples scripts
run mypy "$venv/bin/mypy" --cache-dir "$tmp/mypy_cache"
run pytest "$venv/bin/python" -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider -rfEs "$@"

echo "== summary"
printf '  %s\n' "${status[@]}"
if printf '%s\n' "${status[@]}" | grep -q FAILED; then
    echo "Something broke on the newest releases (above: the failures and what moved); constraints.txt unchanged."
    exit 1
fi
if [[ $refresh == 1 ]]; then
    { awk '/^#/ { print; next } { exit }' constraints.txt; cat "$tmp/freeze.txt"; } > "$tmp/constraints.txt"
    mv "$tmp/constraints.txt" constraints.txt
    echo "constraints.txt rewritten from the newest releases: review 'git diff constraints.txt' and commit it."
else
    echo "All green on the newest releases. To lock them: scripts/check_latest.sh --refresh"
fi

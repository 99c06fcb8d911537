#!/usr/bin/env bash
# Builds the C++ extension with AddressSanitizer + UndefinedBehaviorSanitizer in a throw-away copy of the
# repository and runs the kernel tests against that build. The team's .venv and its installed _C are never
# touched: the copy gets its own in-place _C, and PYTHONPATH puts the copy first.
#
#   benchmarks/sanitize.sh [--worktree] [pytest args...]
#
# By default the committed tree (git HEAD) is built; --worktree builds the working tree instead.
# Extra arguments go to pytest (default: the kernel test files below). Exit code 0 = clean.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SOURCE=head
if [[ "${1:-}" == "--worktree" ]]; then SOURCE=worktree; shift; fi
TESTS=("$@")
if [[ ${#TESTS[@]} -eq 0 ]]; then
  TESTS=(tests/test_kernels_exact.py tests/test_kernels_ops.py tests/test_kernels_embeddings.py tests/test_dispatch.py
         tests/test_hardening_ops.py tests/test_fuzz_kernels.py tests/test_concurrency.py)
fi

WORK="$(mktemp -d -t fastdistilbert-sanitize.XXXXXX)"
LOG="$WORK/sanitize.log"
echo "sanitizer build in $WORK (source: $SOURCE)"
if [[ "$SOURCE" == head ]]; then
  git -C "$REPO" archive HEAD setup.py pyproject.toml csrc fastdistilbert trainers tests | tar -x -C "$WORK"
else
  (cd "$REPO" && tar -c --exclude='*.so' --exclude=__pycache__ setup.py pyproject.toml csrc fastdistilbert trainers tests) \
    | tar -x -C "$WORK"
fi
rm -f "$WORK"/fastdistilbert/_C*.so

# The sanitizer runtimes must be loaded before anything else, since the Python executable is not instrumented.
ASAN_LIB="$(gcc -print-file-name=libasan.so)"
UBSAN_LIB="$(gcc -print-file-name=libubsan.so)"

echo "building (-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all) ..."
(cd "$WORK" && FASTDISTILBERT_DEBUG_BUILD=1 FASTDISTILBERT_SANITIZE=address,undefined \
  "$PYTHON" setup.py -q build_ext --inplace >"$WORK/build.log" 2>&1) || { tail -30 "$WORK/build.log"; exit 1; }
SO="$(ls "$WORK"/fastdistilbert/_C*.so)"
# A build that silently dropped the flags would report "clean": require the sanitizer hooks in the library.
hooks=$(nm -D "$SO" | grep -cE "__asan_report|__ubsan_handle" || true)
[[ $hooks -gt 0 ]] || { echo "the extension is not instrumented (no ASan/UBSan hooks in $SO)"; exit 1; }
echo "built $SO ($hooks sanitizer hooks)"

export LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB"
# Python and torch keep memory until exit: leak reports would be noise. Stop at the first error.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"

# Prove the sanitized copy is the one imported (not the team's editable install).
(cd "$WORK" && "$PYTHON" -c "import fastdistilbert._C as c, sys; print('using', c.__file__); \
assert c.__file__.startswith('$WORK'), 'the sanitized build is not the one imported'")

status=0
(cd "$WORK" && "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}") >"$LOG" 2>&1 || status=$?
tail -5 "$LOG"
findings=$(grep -cE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$LOG" || true)
if [[ $status -eq 0 && $findings -eq 0 ]]; then
  echo "SANITIZERS CLEAN: ASan+UBSan, ${TESTS[*]} (log: $LOG)"
else
  grep -nE -A20 "ERROR: AddressSanitizer|runtime error:" "$LOG" | head -60 || true
  echo "SANITIZER FINDINGS: pytest exit $status, $findings sanitizer reports (log: $LOG)"
  exit 1
fi

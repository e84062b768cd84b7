#!/usr/bin/env bash
# shoal's whole test suite, as the README and CI run it (as root, on Debian 12):
#   1. installs the build and test dependencies from Debian's packages;
#   2. builds with warnings as errors and runs every test with CTest;
#   3. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test again.
# Build trees go to build/release and build/sanitize. Exit status is non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

./test/setup-deps.sh

jobs=${SHOAL_JOBS:-2}
run_suite() {
  local dir=$1
  shift
  echo "== configure ${dir}"
  cmake -S . -B "$dir" -G Ninja -DSHOAL_WERROR=ON "$@" >/dev/null
  echo "== build ${dir}"
  cmake --build "$dir" -j "$jobs"
  echo "== test ${dir}"
  ctest --test-dir "$dir" --output-on-failure --timeout 1800 -j 1
}

start=$(date +%s)
run_suite build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_suite build/sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_SANITIZE=ON
echo "== whole suite passed in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Every test rotor has, as CI runs them: a -Werror release build with the unit,
# end-to-end, CLI and fuzz-corpus tests; the same suite under AddressSanitizer
# + UndefinedBehaviorSanitizer; the concurrency tests under ThreadSanitizer;
# the format check; the exported-symbol check; a program compiled against
# the installed header and rotor.pc, in C and C++; and the Python module's
# tests, against the release build and installed into a staging root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-$(nproc)}
OUT=${ROTOR_TEST_BUILD:-$ROOT/build/test}

"$ROOT/scripts/install-deps.sh"

step() { printf '\n=== %s\n' "$*"; }

configure_and_build() { # dir, cmake args...
  local dir=$1
  shift
  cmake -S "$ROOT" -B "$dir" -DROTOR_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$JOBS"
}
mkdir -p "$OUT"

step "release build, all tests"
# ROTOR_PYTHON=ON: a machine without NumPy's headers fails here instead of
# quietly leaving the module out.
configure_and_build "$OUT/release" -DCMAKE_BUILD_TYPE=Release -DROTOR_PYTHON=ON
(cd "$OUT/release" && ctest --output-on-failure -j "$JOBS" -E '^python_tests$')

step "Python module: tests, then installed and imported from elsewhere"
PY=/usr/bin/python3
ROTOR_CLI="$OUT/release/rotor" PYTHONPATH="$OUT/release/bindings/python" \
  "$PY" -m pytest -q -rs -p no:cacheprovider "$ROOT/bindings/python/tests"
rm -rf "$OUT/pyroot"
DESTDIR="$OUT/pyroot" cmake --install "$OUT/release" --component python >/dev/null
site=$(find "$OUT/pyroot" -name 'rotor*.so' -printf '%h\n' | head -n1)
[ -f "$site/rotor.pyi" ] || { echo "rotor.pyi not installed beside the module"; exit 1; }
(cd / && PYTHONPATH="$site" "$PY" -c "import rotor, sys
assert rotor.__file__.startswith('$site'), rotor.__file__
import numpy as np
ix = rotor.Index.build(np.eye(4, dtype=np.float32))
assert ix.search(np.eye(4)[2], k=1)[0][0, 0] == 2
print('installed module ok:', rotor.__file__)")

step "ASan + UBSan build, all tests"
configure_and_build "$OUT/asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROTOR_SANITIZE=ON
(cd "$OUT/asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j "$JOBS")

step "TSan build, concurrency tests"
configure_and_build "$OUT/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROTOR_TSAN=ON \
  -DROTOR_BUILD_TOOLS=OFF
(cd "$OUT/tsan" && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -j "$JOBS" -R 'concurrency|flat|vamana|ivf|vstore|persist|common|filter|test_log$|ram_budget')

step "libFuzzer targets: build with clang, run each from its corpus"
mkdir -p "$OUT/fuzz"
cmake -S "$ROOT" -B "$OUT/fuzz" -DCMAKE_C_COMPILER=clang -DROTOR_FUZZ=ON -DROTOR_BUILD_TOOLS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/fuzz.configure.log" 2>&1 ||
  { cat "$OUT/fuzz.configure.log"; exit 1; }
cmake --build "$OUT/fuzz" -j "$JOBS" --target fuzz_ds_read fuzz_quant_load fuzz_index_open \
  fuzz_cli_args
for target in ds_read quant_load index_open cli_args; do
  # libFuzzer adds what it finds to its corpus directory: give it a copy.
  rm -rf "$OUT/fuzz/corpus_$target"
  cp -r "$ROOT/tests/fuzz/corpus/$target" "$OUT/fuzz/corpus_$target"
  # -close_fd_mask=2: the CLI parser's usage errors go to stderr.
  quiet=()
  [ "$target" = cli_args ] && quiet=(-close_fd_mask=2)
  "$OUT/fuzz/tests/fuzz/fuzz_$target" -runs=2000 -max_len=65536 -artifact_prefix="$OUT/fuzz/" \
    "${quiet[@]}" "$OUT/fuzz/corpus_$target" 2>&1 | tail -n 1
done

step "clang-format"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
clang-format --dry-run --Werror "${sources[@]}"
echo "format ok: ${#sources[@]} files"

step "exported symbols are rotor_* only"
lib=$(find "$OUT/release" -maxdepth 1 -name 'librotor.so.*.*' | head -n1)
stray=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -v '^rotor_' || true)
if [ -n "$stray" ]; then
  echo "symbols outside the rotor_ prefix: $stray"
  exit 1
fi
echo "exports ok: $(nm -D --defined-only "$lib" | grep -c ' rotor_') rotor_* symbols"

step "the library allocates only through its hook and never prints, aborts or exits"
static_lib="$OUT/release/librotor.a"
forbidden='malloc|calloc|realloc|free|aligned_alloc|printf|fprintf|puts|fputs|putchar|perror|abort|exit|_exit|__assert_fail|stdout|stderr'
offenders=$(nm -A "$static_lib" | awk '$2 == "U" {print $1, $3}' | sed 's/.*\.a://' |
  grep -wE "$forbidden" | grep -vE '^alloc\.c\.o: (aligned_alloc|free)$' || true)
if [ -n "$offenders" ]; then
  echo "library objects calling what they must not:"
  echo "$offenders"
  exit 1
fi
echo "ok: only common/alloc.c reaches the C allocator; nothing prints, aborts or exits"

step "install, then compile against rotor.pc in C and C++"
prefix="$OUT/prefix"
rm -rf "$prefix"
cmake --install "$OUT/release" --prefix "$prefix" >/dev/null
cat >"$OUT/hello.c" <<'C'
#include <rotor.h>
#include <stdio.h>
int main(void) {
    float base[4] = {0, 0, 1, 1};
    rotor_matrix m = {base, 2, 2, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    if (rotor_index_build(NULL, &m, &ix) != ROTOR_OK) return 1;
    int64_t id; float q[2] = {0.9f, 1.1f};
    rotor_status st = rotor_index_search(ix, NULL, q, 2, 1, &id, NULL);
    rotor_index_close(ix);
    printf("rotor %s: nearest id %lld\n", rotor_version_string(), (long long)id);
    return st != ROTOR_OK || id != 1;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
cc -std=c11 -Wall -Werror "$OUT/hello.c" -o "$OUT/hello_c" $(pkg-config --cflags --libs rotor)
c++ -x c++ -Wall -Werror "$OUT/hello.c" -o "$OUT/hello_cxx" $(pkg-config --cflags --libs rotor)
LD_LIBRARY_PATH="$(pkg-config --variable=libdir rotor)" "$OUT/hello_c"
LD_LIBRARY_PATH="$(pkg-config --variable=libdir rotor)" "$OUT/hello_cxx"

step "all test stages passed"

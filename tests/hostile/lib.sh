# Shared by the hostile-input tests: a scratch directory, the expect function
# of tests/cli (exit code, a substring of stderr, exactly one line when the
# command fails), a timeout on every command so that a regression that
# blocks fails instead of hanging, and small data files written with perl.
set -u
ROTOR=${1:?usage: $0 PATH-TO-rotor}
ROTOR=$(cd "$(dirname "$ROTOR")" && pwd)/$(basename "$ROTOR")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
# What the last expect printed: kept in $WORK whatever directory a test
# is in (a full file system cannot take them).
OUT=$WORK/out.txt
ERR=$WORK/err.txt
pass=0
fail=0
skipped=0
# Seconds one command may take before it counts as hung.
LIMIT=${HOSTILE_TIMEOUT:-20}

# True when the rotor under test is a sanitizer build (ASan or TSan).
sanitized() { ldd "$ROTOR" | grep -qE 'lib(a|t)san'; }

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*" >&2; }

# expect EXIT STDERR_SUBSTRING -- command...
expect() {
  local want=$1 needle=$2
  shift 3
  timeout -k 5 "$LIMIT" "$@" >"$OUT" 2>"$ERR"
  local got=$?
  if [ "$got" -eq 124 ] || [ "$got" -eq 137 ]; then
    bad "'$*' did not finish within $LIMIT s (blocked?)"
    return
  fi
  if [ "$got" -ne "$want" ]; then
    bad "'$*' exited $got, expected $want; stderr: $(cat "$ERR")"
    return
  fi
  if [ -n "$needle" ] && ! grep -qF -- "$needle" "$ERR"; then
    bad "'$*' stderr lacks '$needle': $(cat "$ERR")"
    return
  fi
  if [ "$want" -ne 0 ] && [ "$(wc -l <"$ERR")" -ne 1 ]; then
    bad "'$*' printed $(wc -l <"$ERR") lines on stderr, expected one: $(cat "$ERR")"
    return
  fi
  ok
}

# check CONDITION-DESCRIPTION command...: passes when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok; else bad "$what"; fi
}

# The names in the current directory (hidden ones too), sorted, one line.
listing() { ls -A | grep -vE '^(out|err)\.txt$' | sort | tr '\n' ' '; }

# ROWS x DIM float32 vectors with integer values, seeded.
# Halves, exact in float32 and never whole, so an index keeps its vectors
# as floats and the files have the sizes the tests count on (whole numbers
# 0..255 would be saved as bytes).
make_fvecs() { # file rows dim seed
  perl -e 'my ($n, $d, $s) = @ARGV; srand($s);
    for (1..$n) { print pack("l<", $d), pack("f<$d", map { int(rand(100)) + 0.5 } 1..$d) }' "$2" "$3" "$4" >"$1"
}

finish() {
  echo "$(basename "$0"): $pass passed, $fail failed, $skipped skipped"
  [ "$fail" -eq 0 ]
}

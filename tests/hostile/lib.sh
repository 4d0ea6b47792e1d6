# Shared by the hostile-input tests: a scratch directory, the expect helper
# of tests/cli (exit code, a substring of stderr, exactly one line when the
# command fails), a timeout on every command so that a regression that
# blocks fails instead of hanging, and small data files written with perl.
set -u
ROTOR=${1:?usage: $0 PATH-TO-rotor}
ROTOR=$(cd "$(dirname "$ROTOR")" && pwd)/$(basename "$ROTOR")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
pass=0
fail=0
skipped=0
# Seconds one command may take before it counts as hung.
LIMIT=${HOSTILE_TIMEOUT:-20}

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*" >&2; }

# expect EXIT STDERR_SUBSTRING -- command...
expect() {
  local want=$1 needle=$2
  shift 3
  timeout -k 5 "$LIMIT" "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" -eq 124 ] || [ "$got" -eq 137 ]; then
    bad "'$*' did not finish within $LIMIT s (blocked?)"
    return
  fi
  if [ "$got" -ne "$want" ]; then
    bad "'$*' exited $got, expected $want; stderr: $(cat err.txt)"
    return
  fi
  if [ -n "$needle" ] && ! grep -qF -- "$needle" err.txt; then
    bad "'$*' stderr lacks '$needle': $(cat err.txt)"
    return
  fi
  if [ "$want" -ne 0 ] && [ "$(wc -l <err.txt)" -ne 1 ]; then
    bad "'$*' printed $(wc -l <err.txt) lines on stderr, expected one: $(cat err.txt)"
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
make_fvecs() { # file rows dim seed
  perl -e 'my ($n, $d, $s) = @ARGV; srand($s);
    for (1..$n) { print pack("l<", $d), pack("f<$d", map { int(rand(100)) } 1..$d) }' "$2" "$3" "$4" >"$1"
}

finish() {
  echo "$(basename "$0"): $pass passed, $fail failed, $skipped skipped"
  [ "$fail" -eq 0 ]
}

#!/usr/bin/env bash
# A writer killed at any instant leaves the old file or the new one and
# nothing else, but for the one window storage/outfile.c names: a kill
# between linking the finished file under its temporary name and renaming
# it over the target leaves that temporary, which the next writer of the
# target removes once its lock is free and it is a few seconds old. A flat
# build (mostly writing: the spill file, then the save),
# a graph build and a ground-truth write are each started over an existing
# output and killed with SIGKILL after delays spread over the time an
# uninterrupted run takes. After every kill the directory must hold exactly
# the files it held before, and the output must be byte for byte the old
# file or pass 'rotor verify'.
. "$(dirname "$0")/lib.sh"

if sanitized; then
  # What is checked is the files a killed writer leaves; a sanitizer sees
  # nothing of a process killed by SIGKILL, and triples the test's time.
  echo "SKIP: the kill points are checked by the release build's run of this test" >&2
  exit 77
fi

KILLS=${HOSTILE_KILLS:-8} # per writer; three writers
make_fvecs big.fvecs 100000 32 1 # a flat build is mostly writing: spill, then save
make_fvecs base.fvecs 4000 32 2
make_fvecs queries.fvecs 20000 32 3
make_fvecs small.fvecs 50 32 4

now_ms() { date +%s%3N; }
listing_but_temporaries() { listing | tr ' ' '\n' | grep -v '^\.rotor-tmp-' | grep . | tr '\n' ' '; }

# kill_points NAME OUT: runs "$@"-style command lines from the array CMD.
kill_points() {
  local name=$1 out=$2
  shift 2
  "$ROTOR" "$@" >/dev/null 2>&1 || { bad "$name: an uninterrupted run failed"; return; }
  local t0 t1
  t0=$(now_ms)
  "$ROTOR" "$@" >/dev/null 2>&1
  t1=$(now_ms)
  local span=$((t1 - t0 + 20))
  cp "old-$out" "$out"
  local old_sum before
  old_sum=$(md5sum <"$out")
  before=$(listing)
  local i olds=0 news=0 temps=0
  for ((i = 0; i < KILLS; i++)); do
    # Spread over the run, with jitter: kill point i of KILLS.
    local delay_ms=$(((span * i) / KILLS + RANDOM % (span / KILLS + 1)))
    "$ROTOR" "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local after state
    after=$(listing)
    if [ "$(md5sum <"$out")" = "$old_sum" ]; then
      state=old
    elif timeout -k 5 "$LIMIT" "$ROTOR" verify "$out" >/dev/null 2>&1; then
      state=new
    else
      state=bad
    fi
    if [ "$state" = bad ]; then
      bad "$name: killed after ${delay_ms} ms, '$out' is neither the old file nor a sound new one"
    elif [ "$after" != "$before" ] && [ "$(listing_but_temporaries)" = "$before" ]; then
      # The named temporary of the link-to-rename window: the next writer
      # must remove it once it is an orphan (older than 2 s, lock free).
      sleep 3
      "$ROTOR" "$@" >/dev/null 2>&1
      if [ "$(listing)" != "$before" ]; then
        bad "$name: killed after ${delay_ms} ms, the next write left: $(listing)"
      else
        temps=$((temps + 1))
        ok
      fi
    elif [ "$after" != "$before" ]; then
      bad "$name: killed after ${delay_ms} ms, the directory holds: $after"
    elif [ "$state" = old ]; then
      olds=$((olds + 1))
      ok
    else
      news=$((news + 1))
      ok
    fi
    cp "old-$out" "$out" # the next kill starts from the old file again
  done
  echo "$name: $KILLS kills over ${span} ms: $olds left the old file, $news the new one," \
    "$temps a temporary the next write removed"
}

# The old outputs: smaller, different files of the same kinds.
"$ROTOR" build --index flat --base small.fvecs --out old-index.rotor --quiet
"$ROTOR" gt --base small.fvecs --queries queries.fvecs --k 10 --out old-gt.ivecs --quiet
cp old-index.rotor index.rotor
cp old-gt.ivecs gt.ivecs
kill_points "flat build" index.rotor build --index flat --base big.fvecs --out index.rotor --quiet
# Without the calibration: it writes nothing, and on these uniform vectors
# the 2-bit codes need deep settings that make it 40 times the graph.
kill_points "vamana build" index.rotor build --index vamana --quant bin2 --degree 16 --build-list 32 \
  --build-threads 1 --calibrate 0 --base base.fvecs --out index.rotor --quiet
kill_points gt gt.ivecs gt --base base.fvecs --queries queries.fvecs --k 100 --threads 1 \
  --out gt.ivecs --quiet

finish

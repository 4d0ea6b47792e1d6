#!/usr/bin/env bash
# Address-space limits (ulimit -v): build, search and bench of every index
# kind under a sweep of limits, from too small to start up to enough. No run
# may die by a signal (an allocation behind the library's allocator hook, a
# failure not checked): each either works or exits 1 with one line.
. "$(dirname "$0")/lib.sh"

if sanitized; then
  echo "SKIP: a sanitizer build reserves terabytes of address space: ulimit -v cannot apply" >&2
  exit 77
fi

make_fvecs base.fvecs 2000 32 1
make_fvecs queries.fvecs 40 32 2
expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 10 --out gt.ivecs --quiet

# limited KIB command...: the command under ulimit -v KIB.
limited=(bash -c 'ulimit -v "$0" && exec "$@"')
kinds=("flat" "flat --quant tq4" "vamana --quant pq8x4" "vamana --quant sq8 --walk-quant bin1fs"
  "ivf --quant bin2 --nlist 16")
limits_mib=(12 16 24 32 48 64 96 128 192 256 512)
failed_runs=0
worked_runs=0

# One run under a limit: a signal or a multi-line failure is a fault.
under() { # mib what command...
  local mib=$1 what=$2
  shift 2
  timeout -k 5 "$LIMIT" "${limited[@]}" $((mib * 1024)) "$@" >"$OUT" 2>"$ERR"
  local got=$?
  if [ "$got" -eq 124 ] || [ "$got" -eq 137 ]; then
    bad "$what under $mib MiB did not finish within $LIMIT s"
  elif [ "$got" -gt 128 ]; then
    bad "$what under $mib MiB died by signal $((got - 128)): $(cat "$ERR")"
  elif [ "$got" -ne 0 ] && [ "$(wc -l <"$ERR")" -ne 1 ]; then
    bad "$what under $mib MiB exited $got with $(wc -l <"$ERR") lines: $(cat "$ERR")"
  else
    ok
    if [ "$got" -eq 0 ]; then worked_runs=$((worked_runs + 1)); else failed_runs=$((failed_runs + 1)); fi
  fi
}

for k in "${kinds[@]}"; do
  read -r -a kind <<<"$k"
  expect 0 "" -- "$ROTOR" build --index "${kind[@]}" --base base.fvecs --out ix.rotor --quiet
  for mib in "${limits_mib[@]}"; do
    under "$mib" "build $k" "$ROTOR" build --index "${kind[@]}" --base base.fvecs --out try.rotor \
      --build-threads 2 --quiet
    under "$mib" "search $k" "$ROTOR" search --index ix.rotor --queries queries.fvecs --k 10 \
      --out ids.ivecs --threads 2 --quiet
    under "$mib" "bench $k" "$ROTOR" bench --index "${kind[@]}" --base base.fvecs \
      --queries queries.fvecs --gt gt.ivecs --k 10 --threads 1 --quiet
  done
done
# The sweep must reach both ends: limits too small to work, and enough.
[ "$failed_runs" -gt 0 ] && ok || bad "no run failed: the sweep starts too high"
[ "$worked_runs" -gt 0 ] && ok || bad "no run worked: the sweep ends too low"
echo "memory.sh: $worked_runs runs worked, $failed_runs failed cleanly"
finish

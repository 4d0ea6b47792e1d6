#!/usr/bin/env bash
# File-size limits (ulimit -f): a write past RLIMIT_FSIZE must come back as
# one line naming the file and the cause (EFBIG, "File too large"), not as
# death by SIGXFSZ; the old file stays whole and no temporary is left. The
# limit is hit in each place a writer writes: the spill file of a build, the
# index file at save, a data set written by gt, and the JSON lines of bench
# and eval-quant.
. "$(dirname "$0")/lib.sh"

make_fvecs base.fvecs 500 16 1   # 34,000 bytes; its spill file 32,000
make_fvecs big.fvecs 5000 16 2   # 340,000 bytes
make_fvecs queries.fvecs 400 16 3
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --out old.rotor --quiet
expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 --out old.ivecs --quiet
cp old.rotor idx.rotor
cp old.ivecs gt.ivecs
before=$(listing)

# limited KIB command...: the command under ulimit -f KIB (1024-byte blocks).
limited=(bash -c 'ulimit -f "$0" && exec "$@"')

unchanged() { # what
  cmp -s old.rotor idx.rotor && ok || bad "$1: idx.rotor changed"
  cmp -s old.ivecs gt.ivecs && ok || bad "$1: gt.ivecs changed"
  [ "$(listing)" = "$before" ] && ok || bad "$1: the directory holds $(listing)"
}

# The spill file (340,000 bytes) passes 64 KiB.
expect 1 "File too large" -- "${limited[@]}" 64 "$ROTOR" build --index flat --base big.fvecs --out idx.rotor --quiet
grep -q "idx.rotor" "$ERR" && ok || bad "the EFBIG line does not name idx.rotor: $(cat "$ERR")"
unchanged "spill"
# The spill file (32,000 bytes) fits in 34 KiB, the index (36,096) does not.
expect 1 "cannot write 'idx.rotor': File too large" -- "${limited[@]}" 34 "$ROTOR" build --index flat \
  --base base.fvecs --out idx.rotor --quiet
unchanged "save"
# gt's ids: 400 x (1 + 100) x 4 bytes = 161,600 bytes.
expect 1 "cannot write 'gt.ivecs': File too large" -- "${limited[@]}" 64 "$ROTOR" gt --base big.fvecs \
  --queries queries.fvecs --k 100 --out gt.ivecs --quiet
unchanged "gt"
# bench --json appends one line to a file already at the limit.
head -c 4096 /dev/zero | tr '\0' ' ' >b.jsonl
before=$(listing)
expect 1 "cannot append to 'b.jsonl': File too large" -- "${limited[@]}" 4 "$ROTOR" bench --index flat \
  --base base.fvecs --queries queries.fvecs --gt old.ivecs --k 5 --json b.jsonl --quiet
[ "$(stat -c %s b.jsonl)" = 4096 ] && ok || bad "b.jsonl grew to $(stat -c %s b.jsonl) bytes"
unchanged "bench --json"
"$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 10 --out gt10.ivecs --quiet
before=$(listing)
expect 1 "cannot append to 'b.jsonl': File too large" -- "${limited[@]}" 4 "$ROTOR" eval-quant \
  --base base.fvecs --queries queries.fvecs --gt gt10.ivecs --quant tq4 --json b.jsonl --quiet
[ "$(stat -c %s b.jsonl)" = 4096 ] && ok || bad "eval-quant: b.jsonl grew to $(stat -c %s b.jsonl) bytes"
unchanged "eval-quant --json"

finish

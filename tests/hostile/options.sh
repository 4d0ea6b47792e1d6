#!/usr/bin/env bash
# Options a hostile user types: malformed numbers, empty items and stray
# separators, values out of range, unknown enumerations, flags given twice,
# --sweep and quantizer specs that do not parse. Each is refused with one
# line and exit 2 before any work: the base file named is missing, so a
# parser that let the option through would fail on the file instead (exit
# 1), and no output appears. Also: help text and parser agree on limits, a
# damaged magic reads "not a rotor index", and a gzip IDX file with bytes
# after its stream is refused.
. "$(dirname "$0")/lib.sh"

build=(build --index vamana --base missing.fvecs --out o.rotor --quiet)
bench=(bench --index vamana --base missing.fvecs --queries missing.fvecs --gt missing.ivecs --quiet)

refused() { # stderr-substring args...
  local needle=$1
  shift
  expect 2 "$needle" -- "$ROTOR" "$@"
  [ ! -e o.rotor ] && ok || bad "'$*' wrote o.rotor"
}

refused "--degree takes a whole number" "${build[@]}" --degree " 5"
refused "--degree takes a whole number" "${build[@]}" --degree "+5"
refused "--degree takes a whole number" "${build[@]}" --degree "5 "
refused "--degree takes a whole number" "${build[@]}" --degree 5x
refused "--degree takes a whole number" "${build[@]}" --degree -1
refused "--degree takes a whole number" "${build[@]}" --degree 0x10
refused "--degree takes a whole number" "${build[@]}" --degree 99999999999999999999999
refused "--build-list takes a whole number" "${build[@]}" --build-list 1
refused "--neighbor-codes takes a whole number from 0 to 1" "${build[@]}" --neighbor-codes 7
refused "--alpha takes a number from 1 to 4" "${build[@]}" --alpha " 1.2"
refused "--alpha takes a number from 1 to 4" "${build[@]}" --alpha inf
refused "--alpha takes a number from 1 to 4" "${build[@]}" --alpha 0x1p0
refused "--alpha takes a number from 1 to 4" "${build[@]}" --alpha nan
refused "--k needs a value, not an empty string" gt --base missing.fvecs --queries missing.fvecs --out o.ivecs --k ""
refused "--k needs a value, not an empty string" gt --base missing.fvecs --queries missing.fvecs --out o.ivecs --k=
refused "--quant: ',' is not a quantizer spec" "${build[@]}" --quant ,
refused "--quant: 'pq' is not a quantizer spec" "${build[@]}" --quant pq
refused "--quant: 'tq4,bin1' is not a quantizer spec" "${build[@]}" --quant tq4,bin1
refused "--walk-quant: 'bin9' is not a quantizer spec" "${build[@]}" --quant tq4 --walk-quant bin9
refused "is not a comma-separated list" eval-quant --base missing.fvecs --queries missing.fvecs \
  --gt missing.ivecs --quant "tq4,"
refused "is not a comma-separated list" eval-quant --base missing.fvecs --queries missing.fvecs \
  --gt missing.ivecs --quant ",tq4"
refused "is not a comma-separated list" eval-quant --base missing.fvecs --queries missing.fvecs \
  --gt missing.ivecs --quant "tq4,,bin1"
refused "--io takes auto, uring or pread" search --index x.rotor --queries q.fvecs --out o.ivecs --io ring
refused "--full-vectors takes ram or disk" "${build[@]}" --full-vectors tape
refused "unknown metric" "${build[@]}" --metric hamming
refused "--build-space takes full or codes" "${build[@]}" --build-space both
refused "--degree is given twice" "${build[@]}" --degree 8 --degree 16
refused "--out is given twice" "${build[@]}" --out p.rotor
refused "--quiet is given twice" "${build[@]}" --quiet
refused "--quiet takes no value" build --index flat --base missing.fvecs --out o.rotor --quiet=1
refused "full vectors on disk need a quantizer" build --index flat --quant none --base missing.fvecs \
  --out o.rotor --full-vectors disk
refused "--target-recall takes a number from 0.5 to 1" "${build[@]}" --target-recall 1.2
refused "--recall takes a number" search --index x.rotor --queries q.fvecs --out o.ivecs --recall 0
refused "an IVF index scans codes" build --index ivf --quant none --base missing.fvecs --out o.rotor
refused "unexpected argument 'stray'" "${build[@]}" stray

# --sweep: checked with the other flags, before the base is read.
for sweep in "L=5," "L=,5" "L=" "L=5;" "L=5;;rerank=3" "rerank=1;rerank=2" "L=1;nprobe=2" \
  "L= 5" "L=5,6x" "L=-1" "M=5" "L=100001" ";"; do
  expect 2 "--sweep" -- "$ROTOR" "${bench[@]}" --sweep "$sweep"
done
expect 2 "L and nprobe start at 1" -- "$ROTOR" "${bench[@]}" --sweep "L=0"
expect 2 "--sweep nprobe=4 needs --index ivf" -- "$ROTOR" "${bench[@]}" --sweep nprobe=4
expect 1 "missing.fvecs" -- "$ROTOR" "${bench[@]}" --sweep "L=5,6;rerank=3"

# Help and parser agree on --starts: the help's maximum is accepted, one
# more is refused.
"$ROTOR" search --help >"$OUT"
max=$(grep -oE 'at most [0-9]+' "$OUT" | grep -oE '[0-9]+' | head -n1)
[ -n "$max" ] && ok || bad "search --help states no maximum for --starts"
expect 1 "missing.fvecs" -- "$ROTOR" search --index flat --base missing.fvecs --queries q.fvecs \
  --out o.ivecs --starts "$max"
expect 2 "--starts takes a whole number from 1 to $max" -- "$ROTOR" search --index flat \
  --base missing.fvecs --queries q.fvecs --out o.ivecs --starts "$((max + 1))"

# A damaged magic: "not a rotor index", not a complaint about the name.
make_fvecs base.fvecs 100 8 1
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --out idx.rotor --quiet
printf 'X' | dd of=idx.rotor bs=1 seek=0 conv=notrunc 2>/dev/null
expect 1 "'idx.rotor' is not a rotor index" -- "$ROTOR" verify idx.rotor
expect 1 "'idx.rotor' is not a rotor index" -- "$ROTOR" info idx.rotor
expect 1 "'idx.rotor' is not a rotor index" -- "$ROTOR" search --index idx.rotor \
  --queries base.fvecs --out o.ivecs

# A gzip IDX file with bytes after its gzip stream.
perl -e 'print pack("N", 0x00000803), pack("N", 2), pack("N", 3), pack("N", 3), pack("C*", 1..18)' \
  | gzip -n >labels-idx3-ubyte.gz
expect 0 "" -- "$ROTOR" verify labels-idx3-ubyte.gz
printf 'trailing' >>labels-idx3-ubyte.gz
expect 1 "trailing garbage" -- "$ROTOR" verify labels-idx3-ubyte.gz
expect 1 "trailing garbage" -- "$ROTOR" gt --base labels-idx3-ubyte.gz --queries base.fvecs \
  --k 1 --out o.ivecs

finish

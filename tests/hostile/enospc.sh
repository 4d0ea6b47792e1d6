#!/usr/bin/env bash
# A full file system, for real: a small tmpfs (size=) is mounted and every
# writer runs out of space in it, in the spill file of a build, at the save
# of the index, in gt's ids and in bench's JSON line. Each must fail with one
# line naming the file and "No space left on device", leave the old file
# whole and no temporary behind. Mounting needs privileges: where it is not
# permitted the test says so and exits 77 (skipped), never passes silently.
. "$(dirname "$0")/lib.sh"

mkdir fs
if ! mount -t tmpfs -o size=512k,mode=0755 rotor-enospc fs 2>mount.err; then
  echo "SKIP: cannot mount a small tmpfs here ($(head -c 200 mount.err)); ENOSPC is not tested" >&2
  exit 77
fi
trap 'umount fs 2>/dev/null; rm -rf "$WORK"' EXIT

make_fvecs base.fvecs 500 16 1     # 34,000 bytes: spill 32,000, index 36,096
make_fvecs mid.fvecs 3000 16 2     # spill 192,000, index about 196,000
make_fvecs big.fvecs 10000 16 3    # spill 640,000: more than the file system
make_fvecs queries.fvecs 400 16 4
cd fs || exit 1
expect 0 "" -- "$ROTOR" build --index flat --base ../base.fvecs --out idx.rotor --quiet
expect 0 "" -- "$ROTOR" gt --base ../base.fvecs --queries ../queries.fvecs --k 5 --out gt.ivecs --quiet
cp idx.rotor ../old.rotor
cp gt.ivecs ../old.ivecs
before=$(listing)
unchanged() { # what
  cmp -s ../old.rotor idx.rotor && ok || bad "$1: idx.rotor changed"
  cmp -s ../old.ivecs gt.ivecs && ok || bad "$1: gt.ivecs changed"
  [ "$(listing)" = "$before" ] && ok || bad "$1: the directory holds $(listing)"
}

expect 1 "No space left on device" -- "$ROTOR" build --index flat --base ../big.fvecs \
  --out idx.rotor --quiet
grep -q "idx.rotor" "$ERR" && ok || bad "the ENOSPC line does not name idx.rotor: $(cat "$ERR")"
unchanged "spill"
# Filler leaves room for the spill file but not for the index beside it.
head -c 100000 /dev/zero >filler
before=$(listing)
expect 1 "cannot write 'idx.rotor': No space left on device" -- "$ROTOR" build --index flat \
  --base ../mid.fvecs --out idx.rotor --quiet
unchanged "save"
expect 1 "cannot write 'gt.ivecs': No space left on device" -- "$ROTOR" gt --base ../big.fvecs \
  --queries ../queries.fvecs --k 400 --out gt.ivecs --quiet
unchanged "gt"
# Fill what is left, then ask bench to append its line to a new file.
head -c 1000000 /dev/zero >>filler 2>/dev/null
before=$(listing)
expect 1 "cannot append to 'b.jsonl': No space left on device" -- "$ROTOR" bench --index flat \
  --base ../base.fvecs --queries ../queries.fvecs --gt ../old.ivecs --k 5 --json b.jsonl --quiet
[ ! -s b.jsonl ] && ok || bad "b.jsonl holds $(stat -c %s b.jsonl) bytes"
rm -f b.jsonl
unchanged "bench --json"
cd ..

finish

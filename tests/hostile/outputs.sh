#!/usr/bin/env bash
# Outputs a hostile user points at the wrong thing: every writer of the CLI
# (build --out, gt --out/--distances, search --out/--distances, bench
# --json) aimed at a FIFO, a character device, a socket, a directory, a
# dangling symbolic link, an input of the same command (by name, by another
# spelling, by a hard link, by a symbolic link) or another output. Each is
# refused with one line before any work, and nothing on disk changes. A
# symbolic link to a regular file is followed: the link stays, its target is
# replaced. A name too long for a "<name>.tmp.XXXXXX" temporary works.
. "$(dirname "$0")/lib.sh"

make_fvecs base.fvecs 300 8 1
make_fvecs queries.fvecs 20 8 2
expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 --out gt.ivecs --quiet
base_sum=$(md5sum <base.fvecs)

mkfifo fifo
mkdir dir
ln -s missing-target dangling.rotor
if mknod chardev c 1 3 2>/dev/null; then have_chardev=1; else have_chardev=0; fi
if python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' sock 2>/dev/null
then have_sock=1; else have_sock=0; fi
[ "$have_chardev" = 1 ] || skip "mknod is not permitted here: no character-device target"
[ "$have_sock" = 1 ] || skip "python3 cannot bind a UNIX socket here: no socket target"

# writers TARGET: every command line that writes TARGET, one per line.
writers() {
  local t=$1
  cat <<CMDS
build --index flat --base base.fvecs --out $t --quiet
gt --base base.fvecs --queries queries.fvecs --k 5 --out $t --quiet
gt --base base.fvecs --queries queries.fvecs --k 5 --out o.ivecs --distances $t --quiet
search --index flat --base base.fvecs --queries queries.fvecs --k 5 --out $t --quiet
search --index flat --base base.fvecs --queries queries.fvecs --k 5 --out o.ivecs --distances $t --quiet
bench --index flat --base base.fvecs --queries queries.fvecs --gt gt.ivecs --k 5 --json $t --quiet
CMDS
}

# Refused targets: the node survives, nothing else appears.
for target in fifo dir dangling.rotor chardev sock; do
  [ -e "$target" ] || [ -L "$target" ] || continue
  before=$(listing)
  kind=$(stat -c %F "$target")
  while read -r -a cmd; do
    expect 1 "cannot write '$target'" -- "$ROTOR" "${cmd[@]}"
    [ "$(stat -c %F "$target")" = "$kind" ] && ok || bad "${cmd[*]}: $target is no longer a $kind"
    [ "$(listing)" = "$before" ] && ok || bad "${cmd[*]}: the directory changed: $(listing)"
  done < <(writers "$target")
done
[ "$(readlink dangling.rotor)" = missing-target ] && ok || bad "the dangling link was changed"

# Outputs that are inputs, under every spelling.
ln base.fvecs hard.fvecs
ln -s base.fvecs soft.fvecs
before=$(listing)
for target in base.fvecs ./base.fvecs "$WORK/base.fvecs" hard.fvecs soft.fvecs; do
  expect 2 "is the --base file" -- "$ROTOR" build --index flat --base base.fvecs --out "$target" --quiet
  expect 2 "is the --base file" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 \
    --out "$target" --quiet
  expect 2 "is the --base file" -- "$ROTOR" search --index flat --base base.fvecs \
    --queries queries.fvecs --k 5 --out o.ivecs --distances "$target" --quiet
done
expect 2 "is the --queries file" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 \
  --out queries.fvecs --quiet
expect 2 "is the --gt file" -- "$ROTOR" bench --index flat --base base.fvecs --queries queries.fvecs \
  --gt gt.ivecs --k 5 --json gt.ivecs --quiet
expect 2 "name the same file" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 \
  --out o.ivecs --distances ./o.ivecs --quiet
[ "$(md5sum <base.fvecs)" = "$base_sum" ] && ok || bad "base.fvecs changed"
[ "$(listing)" = "$before" ] && ok || bad "outputs naming inputs changed the directory: $(listing)"

# An index file given as --index and as --out of a search.
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --out idx.rotor --quiet
idx_sum=$(md5sum <idx.rotor)
expect 2 "is the --index file" -- "$ROTOR" search --index idx.rotor --queries queries.fvecs --k 5 \
  --out idx.rotor --quiet
[ "$(md5sum <idx.rotor)" = "$idx_sum" ] && ok || bad "idx.rotor changed"

# A symbolic link to a regular file: the link stays, the file it names is
# replaced by the new index.
echo old >real.rotor
ln -s real.rotor link.rotor
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --out link.rotor --quiet
[ -L link.rotor ] && [ "$(readlink link.rotor)" = real.rotor ] && ok || bad "the link was replaced"
expect 0 "" -- "$ROTOR" verify real.rotor

# A name of 250 bytes: no room for a suffix, yet it works and leaves only itself.
mkdir long && cd long || exit 1
long=$(printf 'n%.0s' $(seq 1 244)).rotor
expect 0 "" -- "$ROTOR" build --index flat --base ../base.fvecs --out "$long" --quiet
[ "$(listing)" = "$long " ] && ok || bad "a long --out name left: $(listing)"
expect 0 "" -- "$ROTOR" gt --base ../base.fvecs --queries ../queries.fvecs --k 5 \
  --out "$(printf 'g%.0s' $(seq 1 244)).ivecs" --quiet
cd ..

finish

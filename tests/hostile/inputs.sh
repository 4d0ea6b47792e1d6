#!/usr/bin/env bash
# Inputs that are not regular files: a FIFO with no writer (an open or read
# of it blocks forever), a character device, a directory, a socket. Every
# command that reads a file is pointed at each; each must answer with one
# line at once. lib.sh's timeout turns a regression that blocks into a
# failure instead of a hang.
. "$(dirname "$0")/lib.sh"

make_fvecs base.fvecs 300 8 1
make_fvecs queries.fvecs 20 8 2
expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 --out gt.ivecs --quiet
expect 0 "" -- "$ROTOR" build --index flat --quant tq4 --base base.fvecs --out idx.rotor --quiet

mkfifo fifo
mkdir dir
if mknod chardev c 1 3 2>/dev/null; then have_chardev=1; else have_chardev=0; fi
if python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' sock 2>/dev/null
then have_sock=1; else have_sock=0; fi
[ "$have_chardev" = 1 ] || skip "mknod is not permitted here: no character-device input"
[ "$have_sock" = 1 ] || skip "python3 cannot bind a UNIX socket here: no socket input"

# readers SOURCE: every command line that reads SOURCE, one per line.
readers() {
  local s=$1
  cat <<CMDS
info $s
verify $s
search --index $s --queries queries.fvecs --k 5 --out o.ivecs --quiet
search --index flat --base base.fvecs --queries $s --k 5 --out o.ivecs --quiet
search --index idx.rotor --queries $s --k 5 --out o.ivecs --quiet
build --index flat --base $s --out o.rotor --quiet
gt --base $s --queries queries.fvecs --k 5 --out o.ivecs --quiet
gt --base base.fvecs --queries $s --k 5 --out o.ivecs --quiet
bench --index flat --base base.fvecs --queries queries.fvecs --gt $s --k 5 --quiet
bench --index $s --queries queries.fvecs --gt gt.ivecs --k 5 --quiet
eval-quant --base $s --queries queries.fvecs --gt gt.ivecs --quant tq4 --quiet
CMDS
}

for source in fifo chardev dir sock; do
  [ -e "$source" ] || continue
  kind=$(stat -c %F "$source")
  before=$(listing)
  while read -r -a cmd; do
    timeout -k 5 "$LIMIT" "$ROTOR" "${cmd[@]}" >"$OUT" 2>"$ERR"
    got=$?
    if [ "$got" -eq 124 ] || [ "$got" -eq 137 ]; then
      bad "'${cmd[*]}' blocked on the $kind"
    elif [ "$got" -eq 0 ]; then
      bad "'${cmd[*]}' accepted the $kind"
    elif ! grep -qE "is (a FIFO|a character device|a directory|a socket), not a regular file" "$ERR"; then
      bad "'${cmd[*]}' did not say the $kind is not a regular file: $(cat "$ERR")"
    elif [ "$(wc -l <"$ERR")" -ne 1 ]; then
      bad "'${cmd[*]}' printed $(wc -l <"$ERR") lines: $(cat "$ERR")"
    else
      ok
    fi
    [ "$(listing)" = "$before" ] && ok || bad "'${cmd[*]}' left files: $(listing)"
  done < <(readers "$source")
done

# A FIFO that does have a writer, which never writes: still refused at
# once, since the type is checked before anything is read.
sleep 60 >fifo &
writer=$!
expect 1 "is a FIFO, not a regular file" -- "$ROTOR" info fifo
expect 1 "is a FIFO, not a regular file" -- "$ROTOR" gt --base fifo --queries queries.fvecs --k 5 \
  --out o.ivecs --quiet
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null

finish

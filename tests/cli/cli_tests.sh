#!/usr/bin/env bash
# End-to-end tests of the rotor tool: exit codes, one-line errors, and the
# answers of gt / search / bench on small files written here with perl
# (part of every Debian system).
set -u
ROTOR=${1:?usage: cli_tests.sh PATH-TO-rotor}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect EXIT STDERR_SUBSTRING -- command...
# Checks the exit code, that stderr holds the substring, and that a failing
# command says exactly one line.
expect() {
  local want=$1 needle=$2
  shift 3
  "$@" >out.txt 2>err.txt
  local got=$?
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

# 500 base vectors of 16 dimensions with integer values; queries are base
# rows 0, 7, 14, ... moved by +0.25 in column 0, so query i's nearest
# neighbour is base row 7*i.
perl -e 'srand(3); for $i (0..499) { print pack("l<", 16), pack("f<16", map { int(rand(100)) } 1..16) }' >base.fvecs
perl -e 'open F, "<", "base.fvecs"; binmode F; local $/; $b = <F>;
  for $i (0..39) { @v = unpack("f<16", substr($b, 7*$i*68 + 4, 64)); $v[0] += 0.25;
    print pack("l<", 16), pack("f<16", @v) }' >queries.fvecs

expect 2 "no command given" -- "$ROTOR"
expect 0 "" -- "$ROTOR" --help
expect 2 "unknown command 'frob'" -- "$ROTOR" frob
expect 0 "" -- "$ROTOR" gt --help
expect 2 "gt does not take '--json'" -- "$ROTOR" gt --json x
expect 2 "--k takes a whole number from 1" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 0 --out gt.ivecs
expect 2 "unknown metric 'manhattan'" -- "$ROTOR" gt --metric manhattan
expect 2 "gt needs --k" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --out gt.ivecs

expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 20 --out gt.ivecs --distances gt.fvecs --quiet
first=$(perl -e 'open F, "<", "gt.ivecs"; binmode F; local $/; $b = <F>; $ok = 1;
  for $i (0..39) { ($d, $id) = unpack("l<l<", substr($b, $i*84, 8)); $ok = 0 if $d != 20 || $id != 7*$i }
  print $ok')
[ "$first" = 1 ] && ok || bad "gt: first neighbour of query i is not base row 7i"
dist0=$(perl -e 'open F, "<", "gt.fvecs"; binmode F; read F, $h, 8; print unpack("x4 f<", $h)')
[ "$dist0" = "0.0625" ] && ok || bad "gt: distance of query 0 to row 0 is $dist0, expected 0.0625"

expect 0 "" -- "$ROTOR" info gt.ivecs
grep -q "rows:       40" out.txt && grep -q "dimensions: 20" out.txt && ok || bad "info gt.ivecs: $(cat out.txt)"
expect 0 "" -- "$ROTOR" verify base.fvecs
grep -q "holds 500 rows of 16 float32" out.txt && ok || bad "verify: $(cat out.txt)"

# search with threads gives the same ids as gt
expect 0 "" -- "$ROTOR" search --index flat --base base.fvecs --queries queries.fvecs --k 20 --out s.ivecs --threads 2 --quiet
cmp -s s.ivecs gt.ivecs && ok || bad "search ids differ from gt ids"

expect 0 "" -- "$ROTOR" bench --index flat --base base.fvecs --queries queries.fvecs --gt gt.ivecs --k 10 --json b.jsonl --quiet --runs 3
grep -qE '^flat .* 1\.0000 +1\.0000 ' out.txt && ok || bad "bench: recall is not 1.0000: $(cat out.txt)"
for key in method params k threads recall_at_1 recall_at_10 qps mean_latency_us p99_latency_us \
           build_seconds index_bytes peak_rss_bytes cpu_seconds; do
  grep -q "\"$key\":" b.jsonl && ok || bad "bench JSON lacks key $key"
done
[ "$(wc -l <b.jsonl)" -eq 1 ] && ok || bad "bench JSON should be one line"

# bad input: one line, non-zero, never a signal
expect 1 "cannot read base vectors: " -- "$ROTOR" gt --base missing.fvecs --queries queries.fvecs --k 5 --out x.ivecs
head -c 1000 base.fvecs >trunc.fvecs
expect 1 "trunc.fvecs" -- "$ROTOR" gt --base trunc.fvecs --queries queries.fvecs --k 5 --out x.ivecs
expect 1 "trunc.fvecs" -- "$ROTOR" verify trunc.fvecs
perl -e 'print pack("l<", 16), pack("f<15", 1..15), pack("L<", 0x7fc00000)' >nan.fvecs
expect 1 "NaN" -- "$ROTOR" gt --base base.fvecs --queries nan.fvecs --k 5 --out x.ivecs
perl -e 'print pack("l<", 8), pack("f<8", 1..8)' >q8.fvecs
expect 1 "8 dimensions" -- "$ROTOR" search --index flat --base base.fvecs --queries q8.fvecs --k 5 --out x.ivecs
echo hello >base.txt
expect 1 "cannot tell the format" -- "$ROTOR" info base.txt
head -c 168 gt.ivecs >gt_short.ivecs
expect 1 "ground truth 'gt_short.ivecs' has 2 rows" -- "$ROTOR" bench --index flat --base base.fvecs --queries queries.fvecs --gt gt_short.ivecs --quiet
expect 2 "'hnsw' is neither a kind" -- "$ROTOR" bench --index hnsw --base base.fvecs --queries queries.fvecs --gt gt.ivecs
expect 2 "needs --index vamana" -- "$ROTOR" bench --index ivf --quant tq4 --sweep L=10 --base base.fvecs --queries queries.fvecs --gt gt.ivecs
expect 2 "--sweep takes" -- "$ROTOR" bench --index vamana --sweep ef=10 --base base.fvecs --queries queries.fvecs --gt gt.ivecs
expect 2 "--alpha takes" -- "$ROTOR" bench --index vamana --alpha 0.5 --base base.fvecs --queries queries.fvecs --gt gt.ivecs
# an IVF index with no flags chooses its codes, as every kind does
expect 0 "" -- "$ROTOR" bench --index ivf --base base.fvecs --queries queries.fvecs --gt gt.ivecs --quiet

# the navigators: one JSON line per sweep value, recall rising with the list
expect 0 "" -- "$ROTOR" bench --index vamana --quant tq4 --degree 16 --build-list 40 --sweep L=10,64 --base base.fvecs --queries queries.fvecs --gt gt.ivecs --json v.jsonl --quiet
[ "$(wc -l <v.jsonl)" -eq 2 ] && ok || bad "vamana sweep should write two JSON lines"
grep -q '"params":"tq4,R=16,L=64,rerank=100"' v.jsonl && ok || bad "vamana JSON params: $(cat v.jsonl)"
for key in bytes_vectors bytes_codes bytes_graph bytes_graph_codes quant; do
  grep -q "\"$key\":" v.jsonl && ok || bad "vamana JSON lacks key $key"
done
grep -qE '^vamana +tq4,R=16,L=64,rerank=100 +1 +[0-9.]+ +(0\.9[5-9][0-9]*|1\.0000) ' out.txt && ok ||
  bad "vamana at L=64 below recall@10 0.95: $(cat out.txt)"
expect 0 "" -- "$ROTOR" bench --index ivf --quant pq8x4 --nlist 8 --sweep nprobe=1,8 --base base.fvecs --queries queries.fvecs --gt gt.ivecs --quiet
grep -qE '^ivf +pq8x4,nprobe=8,rerank=100 +1 +[0-9.]+ +(0\.9[5-9][0-9]*|1\.0000) ' out.txt && ok ||
  bad "ivf probing every list below recall@10 0.95: $(cat out.txt)"
expect 0 "" -- "$ROTOR" bench --index vamana --quant bin2 --sweep "L=10,20;rerank=0,30" --base base.fvecs --queries queries.fvecs --gt gt.ivecs --json p.jsonl --quiet
[ "$(wc -l <p.jsonl)" -eq 4 ] && ok || bad "a 2 x 2 sweep should write four JSON lines"
grep -q '"params":"bin2,R=32,L=20,rerank=30"' p.jsonl && ok || bad "product sweep params: $(cat p.jsonl)"
expect 2 "L and nprobe start at 1" -- "$ROTOR" bench --index vamana --sweep "L=0" --base base.fvecs --queries queries.fvecs --gt gt.ivecs
expect 0 "" -- "$ROTOR" search --index vamana --base base.fvecs --queries queries.fvecs --k 20 --list 200 --out sv.ivecs --quiet
cmp -s sv.ivecs gt.ivecs && ok || bad "vamana search with a list of 200 on 500 points differs from gt"
[ -e x.ivecs ] && bad "a failed command left an output file behind" || ok

# index files: build, info, verify, search and bench from the file
expect 2 "build needs --out" -- "$ROTOR" build --index vamana --base base.fvecs
expect 2 "--full-vectors takes ram or disk" -- "$ROTOR" build --index vamana --base base.fvecs --out v.rotor --full-vectors ssd
expect 2 "full vectors on disk need a quantizer" -- "$ROTOR" build --index vamana --quant none --base base.fvecs --out v.rotor --full-vectors disk --quiet
expect 2 "--build-memory takes a byte count" -- "$ROTOR" build --index vamana --base base.fvecs --out v.rotor --build-memory lots
expect 2 "applies to vamana indexes only" -- "$ROTOR" build --index ivf --quant tq4 --base base.fvecs --out v.rotor --build-memory 1M
expect 2 "needs at least" -- "$ROTOR" build --index vamana --quant none --base base.fvecs --out bm.rotor --build-memory 1K
[ ! -e bm.rotor ] && ok || bad "a refused build left bm.rotor behind"
[ -e v.rotor ] && bad "a refused build left an index file" || ok
expect 0 "" -- "$ROTOR" build --index vamana --quant tq4 --degree 16 --build-list 40 --base base.fvecs --out v.rotor --full-vectors disk
grep -q "vamana index of 500 x 16" err.txt && ok || bad "build summary: $(cat err.txt)"
[ "$(ls | grep -c 'v.rotor')" -eq 1 ] && ok || bad "build left a temporary file: $(ls)"
expect 0 "" -- "$ROTOR" info v.rotor
grep -q "kind:          vamana" out.txt && grep -q "vectors:       500 x 16" out.txt &&
  grep -q "full vectors:  on disk" out.txt && ok || bad "info v.rotor: $(cat out.txt)"
# all 500 points sampled as starting points, in sqrt(500) = 22 groups
grep -q "start points:  500 in 22 groups" out.txt && ok || bad "info starting points: $(cat out.txt)"
expect 0 "" -- "$ROTOR" info v.rotor --full-vectors ram
grep -q "full vectors:  in RAM" out.txt && ok || bad "info --full-vectors ram: $(cat out.txt)"
expect 0 "" -- "$ROTOR" verify v.rotor
grep -q "is a sound rotor index" out.txt && ok || bad "verify v.rotor: $(cat out.txt)"

# no flags: codes chosen by the build, a calibration table, searches by recall
expect 0 "" -- "$ROTOR" build --index vamana --base base.fvecs --out d.rotor
grep -q "RAM to search" err.txt && grep -q "calibration:" err.txt && ok ||
  bad "default build summary: $(cat err.txt)"
expect 0 "" -- "$ROTOR" info d.rotor
grep -q "calibration:   .* settings measured at recall@10" out.txt && ok || bad "info calibration: $(cat out.txt)"
expect 0 "" -- "$ROTOR" bench --index d.rotor --queries queries.fvecs --gt gt.ivecs --recall 0.9 --quiet
grep -q "L=" out.txt && ok || bad "bench --recall: $(cat out.txt)"
# Without --base bench reads the index's own vectors, so a tie counts
# whichever twin the ground truth lists: every row twice (row i + 500 is
# row i) and a ground truth naming only the twins. Counted by ids, about
# half the answers would miss.
perl -e 'open F, "<", "base.fvecs"; binmode F; local $/; $b = <F>; print $b, $b' >twins.fvecs
perl -e 'open F, "<", "gt.ivecs"; binmode F; local $/; $b = <F>; $w = unpack("l<", $b);
  for ($o = 0; $o < length($b); $o += 4 * ($w + 1)) {
    @r = unpack("l<*", substr($b, $o + 4, 4 * $w)); print pack("l<", $w), pack("l<*", map { $_ + 500 } @r) }' >twins_gt.ivecs
expect 0 "" -- "$ROTOR" build --index flat --quant none --base twins.fvecs --out t.rotor --quiet
expect 0 "" -- "$ROTOR" bench --index t.rotor --queries queries.fvecs --gt twins_gt.ivecs --quiet
grep -q "recall by distance to the index's own vectors" out.txt && grep -qE '^flat .* 1\.0000 +1\.0000 ' out.txt &&
  ok || bad "bench without --base over twins: $(cat out.txt)"
expect 0 "" -- "$ROTOR" build --index vamana --quant sq8 --calibrate 0 --base base.fvecs --out n.rotor --quiet
expect 1 "no calibration table" -- "$ROTOR" search --index n.rotor --queries queries.fvecs --k 10 --out r.ivecs --recall 0.9
[ -e r.ivecs ] && bad "a refused search by recall left its output" || ok
[ "$(wc -l <err.txt)" -eq 1 ] && ok || bad "the refusal is not one line: $(cat err.txt)"
expect 0 "" -- "$ROTOR" tune n.rotor --queries queries.fvecs
grep -q "calibrated in" out.txt && ok || bad "tune: $(cat out.txt)"
expect 0 "" -- "$ROTOR" search --index n.rotor --queries queries.fvecs --k 10 --out r.ivecs --recall 0.9 --quiet
expect 2 "is not a rotor index" -- "$ROTOR" tune base.fvecs

expect 0 "" -- "$ROTOR" search --index v.rotor --queries queries.fvecs --k 20 --list 200 --rerank 100 --out sf.ivecs --quiet
cmp -s sf.ivecs gt.ivecs && ok || bad "search from the file differs from gt"
for io in pread uring; do
  # the fixed depth reads every candidate
  expect 0 "" -- "$ROTOR" bench --index v.rotor --io $io --queries queries.fvecs --gt gt.ivecs --sweep "L=64;rerank=20" --rerank-bound off --json f.jsonl --quiet
  grep -qE '^vamana +tq4,R=16,L=64,rerank=20,bound=off +1 +[0-9.]+ +(0\.9[5-9][0-9]*|1\.0000) .* 20\.0 +20 +[0-9.]+ +20\.0$' out.txt && ok ||
    bad "bench from the file ($io): $(cat out.txt)"
  off=$(awk '/^vamana/ { print $4, $5 }' out.txt)
  # the bound (the default, here with one read in flight): the same results, so the same
  # recall, with at most as many reads, every one scored
  expect 0 "" -- "$ROTOR" bench --index v.rotor --io $io --queries queries.fvecs --gt gt.ivecs --sweep "L=64;rerank=20" --rerank-window 1 --json f.jsonl --quiet
  awk -v off="$off" '/^vamana/ { exit !($4 " " $5 == off && $(NF-3) <= 20 && $(NF-3) == $NF) }' out.txt && ok ||
    bad "bench from the file with the bound ($io, recall $off without): $(cat out.txt)"
done
expect 2 "--rerank-bound takes on or off" -- "$ROTOR" bench --index v.rotor --queries queries.fvecs --gt gt.ivecs --rerank-bound no
expect 2 "--rerank-window takes a whole number from 1 to 64" -- "$ROTOR" bench --index v.rotor --queries queries.fvecs --gt gt.ivecs --rerank-window 65
grep -q '"io_backend":"pread"' f.jsonl && grep -q '"io_backend":"io_uring"' f.jsonl && ok || bad "bench JSON backends: $(cat f.jsonl)"
grep -q '"walk_quant":""' f.jsonl && ok || bad "bench JSON walk_quant of a one-code index: $(cat f.jsonl)"
grep -q '"rerank_bound":false' f.jsonl && grep -q '"rerank_bound":true' f.jsonl && ok || bad "bench JSON rerank_bound: $(cat f.jsonl)"
for key in index_file vectors_on_disk reads_mean reads_p99 io_us_mean open_seconds scored_mean; do
  grep -q "\"$key\":" f.jsonl && ok || bad "disk bench JSON lacks key $key"
done
expect 1 "8 dimensions, the index has 16" -- "$ROTOR" search --index v.rotor --queries q8.fvecs --k 5 --out x.ivecs
# --load 1 reads the index into memory, 0 maps it, the default copies it out
# of the mapping: the same answers every way
expect 0 "" -- "$ROTOR" search --index v.rotor --load 1 --full-vectors ram --queries queries.fvecs --k 20 --list 200 --rerank 100 --out sl.ivecs --quiet
cmp -s sl.ivecs sf.ivecs && ok || bad "search --load 1 differs from the default open's"
expect 0 "" -- "$ROTOR" search --index v.rotor --load 0 --full-vectors ram --queries queries.fvecs --k 20 --list 200 --rerank 100 --out sm.ivecs --quiet
cmp -s sm.ivecs sf.ivecs && ok || bad "search --load 0 differs from the default open's"
expect 0 "" -- "$ROTOR" search --index v.rotor --load auto --full-vectors ram --queries queries.fvecs --k 20 --list 200 --rerank 100 --out sa.ivecs --quiet
cmp -s sa.ivecs sf.ivecs && ok || bad "search --load auto differs from the default open's"
expect 2 "--load" -- "$ROTOR" bench --index v.rotor --load 2 --queries queries.fvecs --gt gt.ivecs
# the walking code of choice: binary fast-scan, re-estimated on sq8 (16 bits a
# code rank coarsely: the refine looks at 120 of them)
expect 0 "" -- "$ROTOR" build --index vamana --quant sq8 --walk-quant bin1fs --degree 16 --build-list 40 --base base.fvecs --out w.rotor --quiet
expect 0 "" -- "$ROTOR" bench --index w.rotor --load 1 --queries queries.fvecs --gt gt.ivecs --sweep "L=64;rerank=20" --refine 120 --json w.jsonl --quiet
grep -qE '^vamana +bin1fs\+sq8,R=16,L=64,refine=120,rerank=20 +1 +[0-9.]+ +(0\.9[5-9][0-9]*|1\.0000) ' out.txt && ok ||
  bad "bench of a bin1fs+sq8 index: $(cat out.txt)"
grep -q '"quant":"sq8","walk_quant":"bin1fs"' w.jsonl && ok || bad "bench JSON of a walk on other codes: $(cat w.jsonl)"
# the starting points and the refine depth swept too: every combination, the
# rerank innermost, each line naming its settings
expect 0 "" -- "$ROTOR" bench --index w.rotor --queries queries.fvecs --gt gt.ivecs --sweep "L=32,64;starts=16,64;refine=40,120;rerank=10,20" --json ws.jsonl --quiet
[ "$(wc -l <ws.jsonl)" -eq 16 ] && ok || bad "a 2 x 2 x 2 x 2 sweep should write 16 JSON lines"
sed -n 7p ws.jsonl | grep -q '"params":"bin1fs+sq8,R=16,L=32,S=64,refine=120,rerank=10"' && ok ||
  bad "sweep order or params: $(sed -n 7p ws.jsonl)"
expect 2 "each once" -- "$ROTOR" bench --index w.rotor --queries queries.fvecs --gt gt.ivecs --sweep "L=32;starts=16;starts=64"
# a graph given no degree and no neighbours' codes is 64 wide; a walk may read
# fewer of each node's neighbours, and the sweep names them
expect 0 "" -- "$ROTOR" build --index vamana --quant sq8 --neighbor-codes 0 --calibrate 0 --base base.fvecs --out wide.rotor --quiet
expect 0 "" -- "$ROTOR" bench --index wide.rotor --queries queries.fvecs --gt gt.ivecs --sweep "L=32;neighbors=16,0;rerank=20" --json wn.jsonl --quiet
[ "$(wc -l <wn.jsonl)" -eq 2 ] && ok || bad "a sweep of two neighbour counts should write 2 JSON lines"
sed -n 1p wn.jsonl | grep -q '"params":"sq8,R=64,L=32,N=16,rerank=20"' && ok || bad "sweep of neighbours: $(sed -n 1p wn.jsonl)"
sed -n 2p wn.jsonl | grep -q '"params":"sq8,R=64,L=32,rerank=20"' && ok || bad "sweep of neighbours: $(sed -n 2p wn.jsonl)"
expect 2 "--neighbors" -- "$ROTOR" search --index wide.rotor --queries queries.fvecs --k 5 --out x.ivecs --neighbors 0
# the walk's work per query: records expanded, and more codes estimated than records
awk -F'"hops_mean":|,"estimated_mean":|,"timestamp"' '{ h = $2 + 0; e = $3 + 0; exit !(h >= 10 && h <= 400 && e > 2 * h) }' w.jsonl &&
  ok || bad "bench JSON hops and estimates of a walk: $(cat w.jsonl)"

# damaged, truncated and foreign index files: one line, exit 1, never a signal
flip() { # FILE OFFSET: inverts one byte in place (a negative offset counts from the end)
  perl -e '($f, $o) = @ARGV; open F, "+<", $f or die; binmode F; $o += -s $f if $o < 0;
    seek F, $o, 0; read F, $c, 1; seek F, $o, 0; print F chr(ord($c) ^ 255); close F' "$1" "$2"
}
cp v.rotor vq.rotor
flip vq.rotor 4100 # inside the quantizer section, which every open decodes
expect 1 "quantizer section" -- "$ROTOR" info vq.rotor
expect 1 "quantizer section" -- "$ROTOR" search --index vq.rotor --queries queries.fvecs --k 5 --out x.ivecs
cp v.rotor vv.rotor
flip vv.rotor -100 # inside the vectors, which only verify (and search, which verifies) read
expect 0 "" -- "$ROTOR" info vv.rotor
expect 1 "vectors section" -- "$ROTOR" verify vv.rotor
expect 1 "vectors section" -- "$ROTOR" search --index vv.rotor --queries queries.fvecs --k 5 --out x.ivecs
cp v.rotor vp.rotor
flip vp.rotor 5000 # padding between two sections
expect 1 "not zero" -- "$ROTOR" verify vp.rotor
head -c 9000 v.rotor >t.rotor
expect 1 "truncated" -- "$ROTOR" search --index t.rotor --queries queries.fvecs --k 5 --out x.ivecs
expect 1 "truncated" -- "$ROTOR" verify t.rotor
expect 1 "truncated" -- "$ROTOR" info t.rotor
cp base.fvecs f.rotor
expect 1 "not a rotor index" -- "$ROTOR" search --index f.rotor --queries queries.fvecs --k 5 --out x.ivecs
[ -e x.ivecs ] && bad "a failed search left an output file" || ok

# labels and filters: row i carries label i % 5 (and 9 on rows 0, 10, 20, ...)
perl -e 'for $i (0..499) { print $i % 5, ($i % 10 ? "" : " 9"), "\n" }' >labels.txt
expect 0 "" -- "$ROTOR" build --index vamana --base base.fvecs --labels labels.txt --out lab.rotor --quiet
expect 0 "" -- "$ROTOR" search --index lab.rotor --queries queries.fvecs --k 5 --filter "2|3" --out fs.ivecs
allowed=$(perl -e 'open F, "<", "fs.ivecs"; binmode F; local $/; $b = <F>; $ok = 1;
  for $q (0..39) { for $j (0..4) { $id = unpack("l<", substr($b, $q*24 + 4 + 4*$j, 4));
    $ok = 0 if $id < 0 || ($id % 5 != 2 && $id % 5 != 3) } } print $ok')
[ "$allowed" = 1 ] && ok || bad "search --filter '2|3' returned a vector without label 2 or 3"
expect 0 "" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 10 --labels labels.txt --filter "0&9" --out fgt.ivecs
allowed=$(perl -e 'open F, "<", "fgt.ivecs"; binmode F; local $/; $b = <F>; $ok = 1;
  for $q (0..39) { for $j (0..9) { $id = unpack("l<", substr($b, $q*44 + 4 + 4*$j, 4));
    $ok = 0 if $id % 10 != 0 } } print $ok')
[ "$allowed" = 1 ] && ok || bad "gt --filter '0&9' named a row without both labels"
expect 0 "" -- "$ROTOR" bench --index lab.rotor --base base.fvecs --queries queries.fvecs --gt fgt.ivecs --filter "0&9" --json fb.jsonl --quiet
recall=$(perl -ne 'print $1 if /"recall_at_10":([0-9.]+)/' fb.jsonl)
perl -e "exit !(('$recall' || 0) >= 0.9)" && ok || bad "filtered bench recall@10 '$recall' below 0.9"
expect 0 "" -- "$ROTOR" search --index lab.rotor --queries queries.fvecs --k 5 --filter 77 --out none.ivecs
[ "$(perl -e 'open F, "<", "none.ivecs"; binmode F; local $/; $b = <F>; print unpack("x4 l<", $b)')" = -1 ] && ok || bad "a filter nothing passes should return -1"
printf '1\n2\nx3\n' >badlab.txt
expect 1 "line 3" -- "$ROTOR" build --index flat --base base.fvecs --labels badlab.txt --out bl.rotor
printf '1\n2\n' >shortlab.txt
expect 1 "has 2 lines for 500 vectors" -- "$ROTOR" build --index flat --base base.fvecs --labels shortlab.txt --out bl.rotor
[ -e bl.rotor ] && bad "a refused labels file left an index file" || ok
expect 0 "" -- "$ROTOR" info lab.rotor
grep -q "labels:        6 distinct, on 500 vectors" out.txt && ok || bad "info should count the labels: $(grep labels out.txt)"
expect 2 "mixes | and &" -- "$ROTOR" search --index lab.rotor --queries queries.fvecs --k 5 --filter "1|2&3" --out x.ivecs
expect 2 "--filter needs --labels" -- "$ROTOR" gt --base base.fvecs --queries queries.fvecs --k 5 --filter 1 --out x.ivecs
expect 2 "an index file keeps its own" -- "$ROTOR" search --index lab.rotor --labels labels.txt --queries queries.fvecs --k 5 --out x.ivecs

# keys: every base row's key from a text file (a line each) or a .npy of
# int64; searches return them; int32 outputs refuse keys past 2^31.
perl -e 'for $i (0..499) { print 5000000000 + 3 * $i, "\n" }' >keys.txt
expect 0 "" -- "$ROTOR" build --index vamana --quant sq8 --base base.fvecs --keys keys.txt --out k.rotor --quiet
"$ROTOR" info k.rotor >out.txt 2>&1
grep -q "^keys: *user keys" out.txt && ok || bad "info of a keyed index: $(cat out.txt)"
# query i's nearest neighbour is base row 7i, whose key is 5e9 + 21 i
first_keys() {
  perl -e 'open F, "<", $ARGV[0]; binmode F; local $/; $b = <F>;
    $h = 10 + unpack("v", substr($b, 8, 2)); $ok = 1;
    for $i (0..39) { $ok = 0 if unpack("q<", substr($b, $h + 3 * 8 * $i, 8)) != 5000000000 + 21 * $i }
    print $ok' "$1"
}
expect 0 "" -- "$ROTOR" search --index k.rotor --queries queries.fvecs --k 3 --out k.npy --quiet
[ "$(first_keys k.npy)" = 1 ] && ok || bad "search of a keyed index: first key of query i is not 5e9 + 21i"
expect 1 "key 5000000" -- "$ROTOR" search --index k.rotor --queries queries.fvecs --k 3 --out k.ivecs --quiet
perl -e '$d = "{'"'"'descr'"'"': '"'"'<i8'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (500,), }";
  $d .= " " x (63 - (10 + length($d)) % 64) . "\n"; print "\x93NUMPY\x01\x00", pack("v", length($d)), $d;
  print pack("q<", 5000000000 + 3 * $_) for 0..499' >keys.npy
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --keys keys.npy --out kn.rotor --quiet
expect 0 "" -- "$ROTOR" search --index kn.rotor --queries queries.fvecs --k 3 --out kn.npy --quiet
[ "$(first_keys kn.npy)" = 1 ] && ok || bad "keys from .npy: first key of query i is not 5e9 + 21i"
seq 0 499 >rows.txt
expect 0 "" -- "$ROTOR" build --index flat --base base.fvecs --keys rows.txt --out kr.rotor --quiet
"$ROTOR" info kr.rotor >out.txt 2>&1
grep -q "^keys: *row numbers" out.txt && ok || bad "keys that are row numbers: $(cat out.txt)"
head -n 499 keys.txt >short.txt
expect 1 "has 499 lines, the base has 500 rows" -- "$ROTOR" build --index flat --base base.fvecs --keys short.txt --out x.rotor
sed '10s/.*/5000000000/' keys.txt >dup.txt
expect 1 "key 5000000000 is given twice, for rows 0 and 9" -- "$ROTOR" build --index flat --base base.fvecs --keys dup.txt --out x.rotor
sed '7s/.*/12x/' keys.txt >bad.txt
expect 1 "line 7: '12x' is not a key" -- "$ROTOR" build --index flat --base base.fvecs --keys bad.txt --out x.rotor
sed '8s/.*/-3/' keys.txt >neg.txt
expect 1 "line 8: '-3' is not a key" -- "$ROTOR" build --index flat --base base.fvecs --keys neg.txt --out x.rotor
expect 1 "line 1 holds a NUL byte" -- "$ROTOR" build --index flat --base base.fvecs --keys gt.ivecs --out x.rotor
expect 2 "search does not take '--keys'" -- "$ROTOR" search --index k.rotor --keys keys.txt --queries queries.fvecs --k 3 --out x.npy
[ -e x.rotor ] && bad "a refused build left an output file" || ok

# update: remove keys from an index file and add vectors, recorded in its
# update log; removed keys are never returned again; a refused update
# leaves the file as it was.
cp k.rotor u.rotor
head -n 3 keys.txt >rm.txt # base rows 0, 1, 2
expect 0 "" -- "$ROTOR" update u.rotor --remove rm.txt
"$ROTOR" info u.rotor >out.txt 2>&1
grep -q "^vectors: *497 x 16" out.txt && grep -q "^removed: *3 " out.txt && ok ||
  bad "info after a remove: $(cat out.txt)"
# 500 neighbours of each of the 40 queries: every live key once each, no
# removed one.
has_key() {
  perl -e 'open F, "<", $ARGV[0]; binmode F; local $/; $b = <F>; $h = 10 + unpack("v", substr($b, 8, 2));
    $n = 0; for ($i = $h; $i < length($b); $i += 8) { $n++ if unpack("q<", substr($b, $i, 8)) == $ARGV[1] }
    print $n' "$1" "$2"
}
expect 0 "" -- "$ROTOR" search --index u.rotor --queries queries.fvecs --k 500 --out u.npy --quiet
[ "$(has_key u.npy 5000000000) $(has_key u.npy 5000000006) $(has_key u.npy 5000000009)" = "0 0 40" ] && ok ||
  bad "search after update --remove returned a removed key, or lost a live one"
cp u.rotor u_before.rotor
echo 5000000000 >gone.txt
expect 1 "no vector has key 5000000000" -- "$ROTOR" update u.rotor --remove gone.txt
printf '5000000300\n5000000300\n' >twice.txt
expect 1 "key 5000000300 is given twice" -- "$ROTOR" update u.rotor --remove twice.txt
cmp -s u.rotor u_before.rotor && ok || bad "a refused update changed the index file"
expect 2 "update needs --add, --remove or --compact" -- "$ROTOR" update u.rotor
expect 2 "--compact takes no value" -- "$ROTOR" update u.rotor --compact=1
expect 2 "--keys gives the keys of --add's vectors" -- "$ROTOR" update u.rotor --keys rm.txt
expect 2 "update does not take '--out'" -- "$ROTOR" update u.rotor --remove rm.txt --out x.rotor
# The removed keys come back with the vectors of base rows 0..2.
head -c 204 base.fvecs >add.fvecs
expect 0 "" -- "$ROTOR" update u.rotor --add add.fvecs --keys rm.txt --quiet
expect 0 "" -- "$ROTOR" search --index u.rotor --queries queries.fvecs --k 3 --out u1.npy --quiet
[ "$(first_keys u1.npy)" = 1 ] && ok || bad "search after update --add: keys of base rows not back"
expect 1 "key 5000000000 of row 0 is already in the index" -- "$ROTOR" update u.rotor --add add.fvecs --keys rm.txt
expect 0 "" -- "$ROTOR" verify u.rotor

# update appends to the file's update log (info shows it), which every
# open replays; --compact folds it into the sections, the answers unchanged.
"$ROTOR" info u.rotor >out.txt 2>&1
grep -q "^update log: *2 records, [0-9]* bytes" out.txt && ok || bad "info shows no update log: $(cat out.txt)"
expect 0 "" -- "$ROTOR" update u.rotor --compact --quiet
"$ROTOR" info u.rotor >out.txt 2>&1
grep -q "^update log: *none" out.txt && grep -q "^vectors: *500 x 16" out.txt && ok ||
  bad "info after --compact: $(cat out.txt)"
expect 0 "" -- "$ROTOR" search --index u.rotor --queries queries.fvecs --k 3 --out u2.npy --quiet
cmp -s u1.npy u2.npy && ok || bad "a compacted file answers otherwise than its log did"
# --labels labels --add's vectors in the same change (one record); a
# filtered search finds them; labels for other rows change nothing.
printf '6000000000\n6000000001\n6000000002\n' >newk.txt
printf '7\n7 9\n\n' >addlab.txt
printf '7\n' >addlab_short.txt
cp u.rotor u_before.rotor
expect 1 "has 1 lines for 3 vectors" -- "$ROTOR" update u.rotor --add add.fvecs --keys newk.txt --labels addlab_short.txt
cmp -s u.rotor u_before.rotor && ok || bad "a refused labelled update changed the index file"
expect 2 "--labels gives the labels of --add's vectors" -- "$ROTOR" update u.rotor --remove rm.txt --labels addlab.txt
expect 0 "" -- "$ROTOR" update u.rotor --add add.fvecs --keys newk.txt --labels addlab.txt --quiet
"$ROTOR" info u.rotor >out.txt 2>&1
grep -q "^update log: *1 record, " out.txt && grep -q "^labels: *2 distinct, on 2 vectors" out.txt && ok ||
  bad "info after update --labels: $(cat out.txt)"
expect 0 "" -- "$ROTOR" search --index u.rotor --queries queries.fvecs --k 1 --filter 9 --out u3.npy --quiet
[ "$(has_key u3.npy 6000000001)" = 40 ] && ok || bad "a filtered search misses the vector update --labels labelled"
expect 0 "" -- "$ROTOR" update u.rotor --compact --quiet
# Bytes of an unfinished record at the end (a crash): ignored, reported, and
# cut off by the next update.
cp u.rotor torn.rotor
printf 'RLG1\001\000\000\000' >>torn.rotor
expect 0 "" -- "$ROTOR" verify torn.rotor
"$ROTOR" info torn.rotor >out.txt 2>&1
grep -q "8 bytes of an unfinished record" out.txt && ok || bad "info shows no unfinished record: $(cat out.txt)"
expect 0 "" -- "$ROTOR" update torn.rotor --remove rm.txt --quiet
"$ROTOR" info torn.rotor >out.txt 2>&1
grep -q "^update log: *1 record, " out.txt && ! grep -q "unfinished" out.txt && ok ||
  bad "an update did not cut the unfinished record off: $(cat out.txt)"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

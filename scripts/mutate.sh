#!/usr/bin/env bash
# A small, repeatable mutation check: does the test suite notice when the
# code is wrong? Each mutant of a fixed list (scripts/mutants.txt) is a
# one-line textual change to a file of core/ or actors/. For each one, in a
# scratch copy of the working tree:
#   apply it -> rebuild incrementally -> run the suites that need no database
#   (CTest labels core, messages, actors, distributed) -> put the file back.
# A mutant is KILLED when a test fails (or times out), SURVIVED when every test
# passes, and ERROR when the list is stale (its original text is not found
# exactly once in the file) or the mutated code does not compile. Mutants
# labelled postgres run only with --db (a private PostgreSQL is started).
# Mutants marked `sanitize thread` are built and run with ThreadSanitizer
# (the core suites only): a seqlock that pairs two publications' halves is
# caught reliably only there, where every atomic access is slow.
#
#   bash scripts/mutate.sh                    # every mutant on the list
#   bash scripts/mutate.sh --only config-     # ids starting with config-
#   bash scripts/mutate.sh --check            # only check that the list applies
#   bash scripts/mutate.sh --db               # also the postgres mutants
#   bash scripts/mutate.sh --generate --seed 1 --count 100 --db
#                                             # K mutants nobody chose (below)
#
# --generate derives the candidate mutants mechanically from every .cpp file
# of core/, actors/, messages/ and apps/ (not apps/demo: an interactive
# terminal demo without tests), one change per mutant:
#   rel    a relational or equality operator moved across its boundary
#          (< <=, > >=, == !=, both ways; only binary operators written with
#          a blank on each side, as clang-format writes them)
#   logic  && and || swapped
#   const  an integer literal N replaced by N+1 (not inside a string)
#   ret    `return true/false` swapped, or a boolean return expression negated
#   del    a one-line statement removed (an assignment, ++/--, a call; not a
#          declaration, and not a call of a logger, as PIT does by default)
# A candidate is kept only when its line occurs exactly once in its file (the
# list's rule). The candidates are sorted and K of them are drawn with a
# small LCG seeded by N, so that a seed names the same sample on every
# machine. The sample is written to $MUTATE_DIR/generated-sN-kK.txt (the
# format of scripts/mutants.txt) and run like the curated list, except that
# each mutant runs staged: its own area's suites first, then the others
# (core, messages, actors, distributed, postgres with --db, apps), each stage
# built just before it runs, stopping at the first failing stage. Mutants of
# core/postgres need --db (else SKIPPED).
#
# Not part of CI (a full run rebuilds once per mutant: about half a minute
# each on 2 cores). Exit status: 0 when every mutant run was killed, 1 when one
# survived or was an ERROR, 2 for bad usage or a failing unmutated baseline.
#
# Environment: MUTATE_DIR (scratch directory, default
# /tmp/tasker-health-mutate; kept between runs so rebuilds stay incremental),
# JOBS (build jobs, default 2), MUTATE_TIMEOUT (seconds per CTest test,
# default 120), MUTATE_EXCLUDE (a CTest -E regex of suites to leave out, e.g.
# the latency assertions of apps.daemon_http on a machine under load). ccache is used when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# Prints the generated sample ($1 = seed, $2 = count) in the list's format.
generate_mutants() {
  git ls-files 'core/*.cpp' 'actors/*.cpp' 'messages/*.cpp' 'apps/*.cpp' \
    | grep -v '^apps/demo/' | sort \
    | SEED=$1 COUNT=$2 perl -e '
    use strict; use warnings;
    my @cands;
    my %inv = ("<" => "<=", "<=" => "<", ">" => ">=", ">=" => ">",
               "==" => "!=", "!=" => "==", "&&" => "||", "||" => "&&");
    # Positions outside string literals (an even number of unescaped quotes
    # before them) and before a // comment.
    sub code_end {
      my ($t) = @_; my $q = 0;
      for (my $i = 0; $i < length $t; $i++) {
        my $c = substr($t, $i, 1);
        if ($c eq "\\\\" && $q) { $i++; next; }
        $q = !$q if $c eq "\"";
        return $i if !$q && substr($t, $i, 2) eq "//";
      }
      return length $t;
    }
    sub in_string {
      my ($t, $pos) = @_; my $q = 0;
      for (my $i = 0; $i < $pos; $i++) {
        my $c = substr($t, $i, 1);
        if ($c eq "\\\\" && $q) { $i++; next; }
        $q = !$q if $c eq "\"";
      }
      return $q;
    }
    while (my $file = <STDIN>) {
      chomp $file;
      open(my $in, "<", $file) or die "cannot read $file";
      my @lines = <$in>; close $in;
      my $text = join("", @lines);
      my $stem = $file; $stem =~ s/\.cpp$//; $stem =~ s{/}{_}g;
      my $block = 0;
      my $rawstr = 0;
      for my $n (0 .. $#lines) {
        my $raw = $lines[$n]; chomp $raw;
        (my $t = $raw) =~ s/^\s+|\s+$//g;
        # Raw string literals (help texts, SQL) are text, not code.
        if ($rawstr) { $rawstr = 0 if $t =~ /\)"/; next; }
        if ($t =~ /R"\(/) { $rawstr = 1 unless $t =~ /R"\(.*\)"/; next; }
        if ($block) { $block = 0 if $t =~ m{\*/}; next; }
        if ($t =~ m{^/\*}) { $block = 1 unless $t =~ m{\*/}; next; }
        next if $t eq "" || $t =~ m{^(//|\*|#)};
        my $count = () = $text =~ /\Q$t\E/g;
        next unless $count == 1;
        my $end = code_end($t);
        my $code = substr($t, 0, $end);
        my $line = $n + 1;
        my $k = 0;
        my $add = sub {
          my ($op, $to, $what) = @_;
          $k++;
          push @cands, { id => "gen-$stem-L$line-$op$k", file => $file,
                         from => $t, to => $to, why => $what };
        };
        # rel / logic: binary operators with a blank on each side
        while ($code =~ / (<=|>=|==|!=|<|>|&&|\|\|) /g) {
          my ($op, $pos) = ($1, $-[1]);
          next if in_string($t, $pos);
          my $to = substr($t, 0, $pos) . $inv{$op} . substr($t, $pos + length $op);
          my $kind = ($op eq "&&" || $op eq "||") ? "logic" : "rel";
          $add->($kind, $to, "$op -> $inv{$op}");
        }
        # const: integer literals (hex, digit separators), not floats
        while ($code =~ /(?<![\w.\x27])(0[xX][0-9A-Fa-f\x27]+|\d+(?:\x27\d+)*)/g) {
          my ($lit, $pos) = ($1, $-[1]);
          next if in_string($t, $pos);
          next if substr($code, $pos + length $lit, 1) eq ".";
          (my $v = $lit) =~ s/\x27//g;
          next if length($v) > 15;
          my $new = $v =~ /^0[xX]/ ? sprintf("0x%X", hex($v) + 1) : $v + 1;
          my $to = substr($t, 0, $pos) . $new . substr($t, $pos + length $lit);
          $add->("const", $to, "$lit -> $new");
        }
        # ret
        if ($code =~ /^return (true|false);$/) {
          my $o = $1 eq "true" ? "false" : "true";
          $add->("ret", "return $o;", "return $1 -> return $o");
        } elsif ($code =~ /^return (.+);$/) {
          my $e = $1;
          if ($e =~ /^!| (==|!=|<=|>=|<|>|&&|\|\|) /) {
            $add->("ret", "return !($e);", "return value negated");
          }
        }
        # del: a one-line statement (assignment, ++/--, call)
        my $opens = () = $code =~ /[(\[{]/g;
        my $closes = () = $code =~ /[)\]}]/g;
        if ($code =~ /;$/ && $opens == $closes
            && $code !~ /= (default|delete);$/
            && $code !~ /^(return|using|auto|const|static|constexpr|case|default|break|continue|goto|delete|throw|typedef|namespace|template|struct|class|enum|else)\b/
            && $code !~ /\blog(ger|_)?\b|spdlog|CAF_LOG|->(trace|debug|info|warn|error|critical)\(|\.(trace|debug|info|warn|error|critical)\(/
            && ($code =~ /^[A-Za-z_]\w*(?:(?:\.|->|::)[A-Za-z_]\w*)*(?:\[[^\]]*\])*\s*(?:[-+*\/|&^]?=(?!=)|\+\+|--|\()/
                || $code =~ /^(\+\+|--)[A-Za-z_]/)) {
          $add->("del", "", "statement removed");
        }
      }
    }
    @cands = sort { $a->{id} cmp $b->{id} } @cands;
    my $seed = $ENV{SEED} % 2147483648; my $want = $ENV{COUNT};
    my $x = $seed;
    my $next = sub { $x = (1103515245 * $x + 12345) % 2147483648; return $x; };
    $want = @cands if $want > @cands;
    for (my $i = 0; $i < $want; $i++) { # partial Fisher-Yates
      my $j = $i + $next->() % (@cands - $i);
      @cands[$i, $j] = @cands[$j, $i];
    }
    print "# generated by scripts/mutate.sh --generate --seed $ENV{SEED} --count $ENV{COUNT}\n";
    print "# from ", scalar(@cands), " candidates\n\n";
    for my $c (@cands[0 .. $want - 1]) {
      print "id      $c->{id}\nfile    $c->{file}\nfrom    $c->{from}\nto      $c->{to}\n";
      print "labels  postgres\n" if $c->{file} =~ m{^core/postgres/};
      print "stages  ", stages_of($c->{file}), "\n";
      print "why     generated: $c->{why}\n\n";
    }
    sub stages_of {
      my ($f) = @_;
      my @all = qw(core messages actors distributed postgres apps);
      my $own = $f =~ m{^core/postgres/} ? "postgres"
              : $f =~ m{^core/} ? "core" : $f =~ m{^messages/} ? "messages"
              : $f =~ m{^actors/} ? "actors" : "apps";
      return join(" ", $own, grep { $_ ne $own } @all);
    }
  '
}

list=scripts/mutants.txt
only=()
check_only=0
with_db=0
generate=0
seed=1
count=100
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=${2:?--list needs a file}; shift 2 ;;
    --list=*) list=${1#*=}; shift ;;
    --only) only+=("${2:?--only needs an id prefix}"); shift 2 ;;
    --only=*) only+=("${1#*=}"); shift ;;
    --check) check_only=1; shift ;;
    --db) with_db=1; shift ;;
    --generate) generate=1; shift ;;
    --seed) seed=${2:?--seed needs a number}; shift 2 ;;
    --seed=*) seed=${1#*=}; shift ;;
    --count) count=${2:?--count needs a number}; shift 2 ;;
    --count=*) count=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "mutate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
work=${MUTATE_DIR:-/tmp/tasker-health-mutate}
if [ "$generate" -eq 1 ]; then
  [[ "$seed" =~ ^[0-9]+$ ]] || { echo "mutate.sh: --seed must be a number" >&2; exit 2; }
  [[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "mutate.sh: --count must be >= 1" >&2; exit 2; }
  mkdir -p "$work"
  list=$work/generated-s$seed-k$count.txt
  generate_mutants "$seed" "$count" >"$list"
  echo "mutate.sh: $(grep -c '^id ' "$list") generated mutants in $list"
fi
if [ ! -f "$list" ]; then
  echo "mutate.sh: no mutant list at $list" >&2
  exit 2
fi
jobs=${JOBS:-2}
timeout=${MUTATE_TIMEOUT:-120}
default_labels='^(core|messages|actors|distributed)$'

# ---- the list ----------------------------------------------------------------
# Blocks of "key value" lines, separated by blank lines; '#' starts a comment
# line. Keys: id, file, from, to (required; `to` may be empty), labels (a
# CTest -L regex, default core|messages|actors|distributed), tests (a CTest
# -R regex), sanitize (thread: build and run under TSan), stages (test areas
# run one after the other, stopping at the first that fails; replaces
# labels/tests), why (what the mutant breaks, for the reader).
ids=() files=() froms=() tos=() labels=() tests=() sanitizers=() stages=()
parse_error() {
  echo "mutate.sh: $list:$1: $2" >&2
  exit 2
}
cur_id="" cur_file="" cur_from="" cur_to="" cur_labels="" cur_tests=""
cur_sanitize="" cur_stages=""
have_from=0 have_to=0 block_line=0
flush() {
  [ -n "$cur_id$cur_file$cur_from" ] || [ "$have_to" -eq 1 ] || return 0
  [ -n "$cur_id" ] || parse_error "$block_line" "mutant without an id"
  [ -n "$cur_file" ] || parse_error "$block_line" "mutant $cur_id has no file"
  [ "$have_from" -eq 1 ] && [ -n "$cur_from" ] \
    || parse_error "$block_line" "mutant $cur_id has no (non-empty) from"
  [ "$have_to" -eq 1 ] || parse_error "$block_line" "mutant $cur_id has no to"
  local i
  for i in "${ids[@]}"; do
    [ "$i" != "$cur_id" ] || parse_error "$block_line" "id $cur_id is used twice"
  done
  ids+=("$cur_id") files+=("$cur_file") froms+=("$cur_from") tos+=("$cur_to")
  labels+=("${cur_labels:-$default_labels}") tests+=("$cur_tests")
  sanitizers+=("$cur_sanitize") stages+=("$cur_stages")
  cur_id="" cur_file="" cur_from="" cur_to="" cur_labels="" cur_tests=""
  cur_sanitize="" cur_stages=""
  have_from=0 have_to=0
}
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  case "$line" in
    '#'*) continue ;;
    '' | *[![:space:]]*) ;;
    *) line="" ;; # whitespace only
  esac
  if [ -z "$line" ]; then
    flush
    continue
  fi
  [ -n "$cur_id$cur_file$cur_from" ] || [ "$have_to" -eq 1 ] || block_line=$n
  key=${line%%[[:space:]]*}
  value=${line#"$key"}
  value=${value#"${value%%[![:space:]]*}"} # strip leading blanks
  value=${value%"${value##*[![:space:]]}"} # strip trailing blanks
  case "$key" in
    id) cur_id=$value ;;
    file) cur_file=$value ;;
    from) cur_from=$value have_from=1 ;;
    to) cur_to=$value have_to=1 ;;
    labels) cur_labels=$value ;;
    tests) cur_tests=$value ;;
    sanitize)
      [ "$value" = thread ] || parse_error "$n" "sanitize must be 'thread', got '$value'"
      cur_sanitize=$value
      ;;
    stages) cur_stages=$value ;;
    why) ;;
    *) parse_error "$n" "unknown key '$key' (id, file, from, to, labels, tests, sanitize, stages, why)" ;;
  esac
done <"$list"
flush

selected=()
for i in "${!ids[@]}"; do
  if [ ${#only[@]} -gt 0 ]; then
    match=0
    for p in "${only[@]}"; do
      [[ "${ids[$i]}" == "$p"* ]] && match=1
    done
    [ "$match" -eq 1 ] || continue
  fi
  selected+=("$i")
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "mutate.sh: no mutant selected" >&2
  exit 2
fi

# Replaces the one occurrence of $FROM in file $1 with $TO. Exit 3: not found,
# 4: found more than once (the list must name a unique line). With DRY=1 only
# counts.
replace_once() {
  perl -e '
    my ($file, $from, $to, $dry) = ($ARGV[0], $ENV{FROM}, $ENV{TO}, $ENV{DRY});
    open(my $in, "<", $file) or exit 5;
    local $/; my $text = <$in>; close $in;
    my $count = () = $text =~ /\Q$from\E/g;
    exit 3 if $count == 0;
    exit 4 if $count > 1;
    exit 0 if $dry;
    $text =~ s/\Q$from\E/$to/;
    open(my $out, ">", $file) or exit 5;
    print $out $text; close $out;
  ' "$1"
}

# Checks mutant $1 against the tree at $2; prints the problem, if any.
stale_reason() {
  local i=$1 tree=$2 rc=0
  if [ ! -f "$tree/${files[$i]}" ]; then
    echo "file ${files[$i]} does not exist"
    return
  fi
  FROM=${froms[$i]} TO=${tos[$i]} DRY=1 replace_once "$tree/${files[$i]}" || rc=$?
  case $rc in
    0) ;;
    3) echo "original text not found in ${files[$i]}: ${froms[$i]}" ;;
    4) echo "original text found more than once in ${files[$i]}: ${froms[$i]}" ;;
    *) echo "cannot read ${files[$i]}" ;;
  esac
}

is_db() { [[ "${labels[$1]}" == *postgres* ]]; }

if [ "$check_only" -eq 1 ]; then
  bad=0
  for i in "${selected[@]}"; do
    why=$(stale_reason "$i" "$root")
    if [ -n "$why" ]; then
      printf 'ERROR     %-34s %s\n' "${ids[$i]}" "$why"
      bad=$((bad + 1))
    fi
  done
  echo "mutate.sh: ${#selected[@]} mutants checked, $bad stale"
  [ "$bad" -eq 0 ]
  exit
fi

# ---- the scratch copy ----------------------------------------------------------
src=$work/src
build=$work/build
mkdir -p "$src" "$build" "$work/logs"
echo "mutate.sh: syncing the working tree into $src"
synced=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  if ! cmp -s "$f" "$src/$f"; then
    mkdir -p "$src/$(dirname "$f")"
    cp "$f" "$src/$f" # a new mtime: make rebuilds what depends on it
    synced=$((synced + 1))
  fi
done < <(git ls-files -z --cached --others --exclude-standard)
echo "mutate.sh: $synced files updated"

need_db=0 need_apps=0
for i in "${selected[@]}"; do
  if is_db "$i"; then need_db=1; fi
  if [ -n "${stages[$i]}" ]; then
    need_apps=1
    if [ "$with_db" -eq 1 ]; then need_db=1; fi
  fi
done
areas="core;messages;actors;distributed"
targets=(core-tests message-tests actor-tests distributed-tests)
baseline_labels=$default_labels
if [ "$with_db" -eq 1 ] && [ "$need_db" -eq 1 ]; then
  areas="$areas;postgres"
  targets+=(postgres-tests)
  baseline_labels='^(core|messages|actors|distributed|postgres)$'
fi
build_apps=OFF
if [ "$need_apps" -eq 1 ]; then
  areas="$areas;apps"
  targets+=(apps-tests grpc-tests prometheus-tests example-orchestrator
    distributed-process-tests)
  build_apps=ON
  baseline_labels=${baseline_labels%)\$}'|apps)$'
fi
# The build targets of one stage (a test area).
stage_targets() {
  case "$1" in
    core) echo core-tests ;;
    messages) echo message-tests ;;
    actors) echo actor-tests ;;
    distributed)
      # The process tests exist only with the daemon (apps) built.
      if [ "$build_apps" = ON ]; then
        echo distributed-tests distributed-process-tests
      else
        echo distributed-tests
      fi
      ;;
    postgres) echo postgres-tests ;;
    apps) echo apps-tests grpc-tests prometheus-tests example-orchestrator ;;
  esac
}
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# No -Werror: a mutant that only adds a warning must still be tested.
(cd "$src" && env -u CI cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTASKER_HEALTH_WERROR=OFF "-DTASKER_HEALTH_BUILD_APPS=$build_apps" \
  -DTASKER_HEALTH_BUILD_BENCH=OFF "-DTASKER_HEALTH_TEST_AREAS=$areas" \
  "${launcher[@]}") >"$work/logs/configure.log" 2>&1 || {
  cat "$work/logs/configure.log" >&2
  exit 2
}

pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ]; then bash "$root/scripts/pg.sh" stop "$pg_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if [ "$with_db" -eq 1 ] && [ "$need_db" -eq 1 ]; then
  pg_dir=$(mktemp -d /tmp/tasker-health-mutate-pg.XXXXXX)
  eval "$(bash scripts/pg.sh start "$pg_dir")"
fi

build_all() {
  cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$1" 2>&1
}

# The TSan build of the core suites, configured on first use.
tsan_build=$work/build-tsan
tsan_ready=0
build_tsan() {
  if [ "$tsan_ready" -eq 0 ]; then
    (cd "$src" && env -u CI cmake -S . -B "$tsan_build" -DCMAKE_BUILD_TYPE=Debug \
      -DTASKER_HEALTH_SANITIZE=thread -DTASKER_HEALTH_WERROR=OFF \
      -DTASKER_HEALTH_BUILD_APPS=OFF -DTASKER_HEALTH_BUILD_BENCH=OFF \
      -DTASKER_HEALTH_TEST_AREAS=core "${launcher[@]}") >"$1" 2>&1 || return 1
  fi
  cmake --build "$tsan_build" -j "$jobs" --target core-tests >>"$1" 2>&1
}

# Runs the CTest selection of mutant $1 (or the baseline with $1 = -1) in
# build dir $3; prints the names of the failed tests.
run_tests() {
  local i=$1 log=$2 dir=${3:-$build} args=()
  if [ "$i" -ge 0 ]; then
    args=(-L "${labels[$i]}")
    if [ -n "${tests[$i]}" ]; then args+=(-R "${tests[$i]}"); fi
  else
    args=(-L "$baseline_labels")
  fi
  if [ "$dir" = "$tsan_build" ]; then args=(-L '^core$'); fi
  if [ -n "${MUTATE_EXCLUDE:-}" ]; then args+=(-E "$MUTATE_EXCLUDE"); fi
  if ctest --test-dir "$dir" --timeout "$timeout" --no-tests=error \
    "${args[@]}" >"$log" 2>&1; then
    return 0
  fi
  if grep -q "No tests were found" "$log"; then
    echo "no test matches the labels/tests of this mutant"
    return 2
  fi
  sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (\(.*\))$/\1 (\2)/p' "$log" | paste -sd ' ' -
  return 1
}

echo "mutate.sh: building the unmutated baseline in $build"
if ! build_all "$work/logs/baseline-build.log"; then
  tail -n 40 "$work/logs/baseline-build.log" >&2
  echo "mutate.sh: the unmutated tree does not build" >&2
  exit 2
fi
if ! failed=$(run_tests -1 "$work/logs/baseline-test.log"); then
  echo "mutate.sh: the unmutated tree fails tests ($failed); see $work/logs/baseline-test.log" >&2
  exit 2
fi

# ---- the mutants ---------------------------------------------------------------
killed=0 survived=0 errors=0 skipped=0
current_file=""
restore() {
  if [ -n "$current_file" ]; then
    cp "$work/original" "$src/$current_file" # new mtime: rebuilt next time
    current_file=""
  fi
}
trap 'restore; cleanup' EXIT
start=$SECONDS
for i in "${selected[@]}"; do
  id=${ids[$i]}
  if is_db "$i" && [ "$with_db" -eq 0 ]; then
    printf 'SKIPPED   %-34s needs --db\n' "$id"
    skipped=$((skipped + 1))
    continue
  fi
  why=$(stale_reason "$i" "$src")
  if [ -n "$why" ]; then
    printf 'ERROR     %-34s stale list: %s\n' "$id" "$why"
    errors=$((errors + 1))
    continue
  fi
  t0=$SECONDS
  cp -p "$src/${files[$i]}" "$work/original"
  current_file=${files[$i]}
  FROM=${froms[$i]} TO=${tos[$i]} replace_once "$src/${files[$i]}"
  log_build="$work/logs/$id.build.log"
  log_test="$work/logs/$id.test.log"
  dir=$build
  builder=build_all
  if [ "${sanitizers[$i]}" = thread ]; then
    dir=$tsan_build
    builder=build_tsan
    if [ "$tsan_ready" -eq 0 ]; then
      # The unmutated TSan baseline first, so that a TSan report of the
      # unmutated tree is never counted as a kill.
      cp "$work/original" "$src/${files[$i]}"
      if ! build_tsan "$work/logs/baseline-tsan-build.log" \
        || ! failed=$(run_tests -1 "$work/logs/baseline-tsan-test.log" "$tsan_build"); then
        echo "mutate.sh: the unmutated TSan core suites fail; see $work/logs/baseline-tsan-*.log" >&2
        exit 2
      fi
      tsan_ready=1
      FROM=${froms[$i]} TO=${tos[$i]} replace_once "$src/${files[$i]}"
    fi
  fi
  rc=0
  if [ -n "${stages[$i]}" ]; then
    # Staged: build and run one area at a time, stop at the first failure.
    : >"$log_build"
    : >"$log_test"
    for stage in ${stages[$i]}; do
      if [ "$stage" = postgres ] && [ "$with_db" -eq 0 ]; then continue; fi
      # shellcheck disable=SC2046
      if ! cmake --build "$build" -j "$jobs" --target $(stage_targets "$stage") \
        >>"$log_build" 2>&1; then
        rc=3
        break
      fi
      saved_labels=${labels[$i]} saved_tests=${tests[$i]}
      labels[i]="^$stage\$" tests[i]=""
      failed=$(run_tests "$i" "$log_test.$stage" "$dir") || rc=$?
      labels[i]=$saved_labels tests[i]=$saved_tests
      cat "$log_test.$stage" >>"$log_test"
      rm -f "$log_test.$stage"
      if [ "$rc" -eq 2 ]; then rc=0; fi # an area without tests here
      if [ "$rc" -ne 0 ]; then break; fi
    done
  elif ! "$builder" "$log_build"; then
    rc=3
  else
    failed=$(run_tests "$i" "$log_test" "$dir") || rc=$?
  fi
  if [ "$rc" -eq 3 ]; then
    printf 'ERROR     %-34s does not compile (see %s)\n' "$id" "$log_build"
    errors=$((errors + 1))
    restore
    continue
  fi
  if [ "$rc" -eq 2 ]; then
    printf 'ERROR     %-34s %s\n' "$id" "$failed"
    errors=$((errors + 1))
  elif [ "$rc" -eq 0 ]; then
    printf 'SURVIVED  %-34s %3ds  %s: %s -> %s\n' "$id" $((SECONDS - t0)) \
      "${files[$i]}" "${froms[$i]}" "${tos[$i]}"
    survived=$((survived + 1))
  else
    printf 'KILLED    %-34s %3ds  by %s\n' "$id" $((SECONDS - t0)) "${failed:-a failing test run}"
    killed=$((killed + 1))
  fi
  restore
done
# Leave the scratch builds matching the unmutated tree for the next run.
build_all "$work/logs/final-build.log" || true
if [ "$tsan_ready" -eq 1 ]; then build_tsan "$work/logs/final-tsan-build.log" || true; fi

ran=$((killed + survived))
rate=0
if [ "$ran" -gt 0 ]; then rate=$((100 * killed / ran)); fi
echo
echo "mutate.sh: $killed killed, $survived survived, $errors errors, $skipped skipped of ${#selected[@]} mutants in $((SECONDS - start))s"
echo "mutate.sh: kill rate $killed/$ran = $rate %"
if [ "$survived" -gt 0 ] || [ "$errors" -gt 0 ]; then
  exit 1
fi

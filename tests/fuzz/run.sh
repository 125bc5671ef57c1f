#!/bin/sh
# Drive the libFuzzer targets built from tests/fuzz/fuzz_NAME.c.
#   run.sh regress BIN...  replay tests/fuzz/corpus/NAME/* (seeds and fixed
#                          crash reproducers), then a short fixed-seed
#                          mutation run; any crash fails
#   run.sh explore BIN...  fuzz each target FUZZ_SECONDS (default 60);
#                          new inputs in build/fuzz/corpus/NAME, crashes in
#                          build/fuzz/crash-NAME-*
set -eu

mode="$1"
shift
here=$(dirname "$0")
out=build/fuzz
for bin in "$@"; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seeds="$here/corpus/$name"
    mkdir -p "$seeds"
    case "$mode" in
    regress)
        echo "== fuzz $name: $(ls "$seeds" | wc -l) corpus inputs + 3000 mutations"
        # new inputs land in the first directory: a scratch one, not the tree
        rm -rf "$out/regress-$name"
        mkdir -p "$out/regress-$name"
        "$bin" -runs=3000 -seed=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$out/crash-$name-" "$out/regress-$name" "$seeds" \
            >"$out/regress-$name.log" 2>&1 || {
            tail -40 "$out/regress-$name.log"
            exit 1
        }
        ;;
    explore)
        mkdir -p "$out/corpus/$name"
        echo "== fuzz $name for ${FUZZ_SECONDS:-60} s"
        "$bin" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crash-$name-" \
            "$out/corpus/$name" "$seeds" 2>&1 | grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|stat::number_of_executed_units|artifact_prefix|Test unit written)' || true
        ;;
    *)
        echo "usage: $0 regress|explore BIN..." >&2
        exit 2
        ;;
    esac
done

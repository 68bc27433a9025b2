#!/usr/bin/env bash
# The committed single header is what scripts/amalgamate makes from include/ now.
#   amalgamate_test.sh SOURCE_ROOT
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$src/scripts/amalgamate" "$tmp/shmetrics.hpp"
if ! diff -u "$src/single_include/shmetrics/shmetrics.hpp" "$tmp/shmetrics.hpp" >"$tmp/diff"; then
  head -40 "$tmp/diff"
  echo "FAIL: single_include/shmetrics/shmetrics.hpp is stale: run scripts/amalgamate"
  exit 1
fi
echo "single header up to date"

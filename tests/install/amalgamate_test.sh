#!/usr/bin/env bash
# The committed single headers (shmetrics.hpp, catalog.hpp) are what scripts/amalgamate
# makes from include/ and src/catalog/ now.
#   amalgamate_test.sh SOURCE_ROOT
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$src/scripts/amalgamate" "$tmp"
for h in shmetrics.hpp catalog.hpp; do
  if ! diff -u "$src/single_include/shmetrics/$h" "$tmp/$h" >"$tmp/diff"; then
    head -40 "$tmp/diff"
    echo "FAIL: single_include/shmetrics/$h is stale: run scripts/amalgamate"
    exit 1
  fi
done
echo "single header up to date"

#!/usr/bin/env bash
# A program built against single_include/ alone (-fno-exceptions -Werror) records metrics
# that shmetrics-inspect reads back.
#   single_header_test.sh CONSUMER INSPECT
set -euo pipefail
consumer=$1 inspect=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$consumer" --version | grep -q "segment format"
"$consumer" --shm.dir "$tmp" --shm.prefix single --keep
out=$("$inspect" --shm.dir "$tmp" --shm.prefix single show)
echo "$out"
grep -qx 'consumer_requests_total{model_name="consumer-model"} 42.0' <<<"$out"
grep -qx 'consumer_latency_seconds_count{model_name="consumer-model"} 42.0' <<<"$out"
echo "single header: ok"

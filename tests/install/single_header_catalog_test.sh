#!/usr/bin/env bash
# The vLLM catalog from the single headers alone (docs/catalog.md, "The single header"):
#  1. single_include/shmetrics/shmetrics.hpp mixed with include/'s catalog and reader
#     headers compiles (they share include guards; with #pragma once alone this was 76
#     redefinition errors);
#  2. examples/consumer/catalog_consumer.cpp + catalog_impl.cpp, built with g++ and clang++
#     from a directory holding only shmetrics.hpp and catalog.hpp (no include/, no library,
#     no simdjson, no catalog JSON file), run in an empty directory;
#  3. the segment read back by the real shmetrics-inspect: exactly the picked families, with
#     the catalog's buckets and the recorded counts;
#  4. with simdjson installed: the same program built with -DSHMETRICS_CATALOG_JSON loads
#     data/vllm_catalog.json at run time (a newer catalog), and without it --catalog says so.
#   single_header_catalog_test.sh SOURCE_ROOT INSPECT
set -euo pipefail
src=$1 inspect=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=python3

cat >"$tmp/mix.cpp" <<'CPP'
#include "shmetrics/shmetrics.hpp"
#include "shmetrics/catalog/vllm_metrics.hpp"
#include "shmetrics/catalog/omni_metrics.hpp"
#include "shmetrics/reader/segment_reader.hpp"
int main() { return 0; }
CPP
cat >"$tmp/mix2.cpp" <<'CPP'
#include "shmetrics/catalog/catalog.hpp"
#include "shmetrics/catalog.hpp"
#include "shmetrics/catalog/vllm_metrics.hpp"
int main() { return 0; }
CPP

cxxs=()
for cxx in g++ clang++; do
  if command -v "$cxx" >/dev/null; then cxxs+=("$cxx"); else echo "note: $cxx not installed"; fi
done
[ ${#cxxs[@]} -gt 0 ] || { echo "SKIP: no C++ compiler"; exit 77; }
[ ${#cxxs[@]} -eq 2 ] || { echo "FAIL: want both g++ and clang++ (scripts/install-deps)"; exit 1; }

check() {  # check TEXT_FILE: the families and buckets shmetrics-inspect shows
  "$py" - "$1" "$src/data/vllm_catalog.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
cat = json.load(open(sys.argv[2]))
picked = {"vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
          "vllm:request_prompt_tokens", "vllm:request_success_total", "vllm:num_requests_running"}
types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
assert set(types) == picked, f"families shown {sorted(types)}, picked {sorted(picked)}"
fams = {f["name"]: f for f in cat["families"]}
for name, t in types.items():
    assert t == fams[name]["type"], (name, t)
    if t != "histogram":
        continue
    b = fams[name]["buckets"]
    want = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] if b == "1-2-5" else \
        cat["bucket_sets"][b] if isinstance(b, str) else b
    le = re.findall(rf'^{re.escape(name)}_bucket{{engine="0",le="([^"]+)"', text, re.M)
    assert le[-1] == "+Inf" and [float(x) for x in le[:-1]] == [float(x) for x in want], \
        (name, le, want)
def value(series):
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert m, f"no series {series}"
    return float(m.group(1))
lab = '{engine="0",model_name="consumer-model"}'
assert value("vllm:time_to_first_token_seconds_count" + lab) == 9
assert value("vllm:e2e_request_latency_seconds_count" + lab) == 7
assert value("vllm:e2e_request_latency_seconds_sum" + lab) == 7 * 2.5
assert value('vllm:request_success_total{engine="0",finished_reason="stop",'
             'model_name="consumer-model"}') == 7
assert value("vllm:num_requests_running" + lab) == 3
print(f"ok: {len(types)} families, exactly the picked ones, with the catalog's buckets")
PY
}

run() {  # run NAME PROGRAM [ARGS]: run in an empty directory, read the segment back
  local name=$1 prog=$2
  shift 2
  (cd "$tmp/empty" && env -u SHMETRICS_CATALOG "$prog" --shm.dir "$tmp/shm-$name" \
    --shm.prefix cat --keep "$@") | tee "$tmp/$name.out"
  "$inspect" --shm.dir "$tmp/shm-$name" --shm.prefix cat show >"$tmp/$name.txt"
  check "$tmp/$name.txt"
}

# 1. Mixing the single header with include/'s headers.
for cxx in "${cxxs[@]}"; do
  for m in mix mix2; do
    if ! "$cxx" -std=c++20 -fsyntax-only -I "$src/single_include" -I "$src/include" "$tmp/$m.cpp" \
      2>"$tmp/$m.err"; then
      head -5 "$tmp/$m.err"
      echo "FAIL: $cxx: $(grep -c 'error:' "$tmp/$m.err") errors when $m.cpp includes single_include/"
      echo "and include/ headers together"
      exit 1
    fi
  done
done

# 2. Only the two single headers, in a directory of their own.
mkdir -p "$tmp/inc/shmetrics" "$tmp/empty"
cp "$src/single_include/shmetrics/shmetrics.hpp" "$src/single_include/shmetrics/catalog.hpp" \
  "$tmp/inc/shmetrics/"

consumer=("$src/examples/consumer/catalog_consumer.cpp" "$src/examples/consumer/catalog_impl.cpp")
flags=(-std=c++20 -Wall -Wextra -Werror -Wpedantic -pthread)
for cxx in "${cxxs[@]}"; do
  echo "== $cxx"
  mkdir -p "$tmp/shm-$cxx"
  "$cxx" "${flags[@]}" -I "$tmp/inc" "${consumer[@]}" -o "$tmp/consumer-$cxx"
  if "$cxx" -std=c++20 -E -I "$tmp/inc" "$src/examples/consumer/catalog_impl.cpp" |
    grep -q 'simdjson\.h"'; then
    echo "FAIL: the catalog single header includes simdjson without SHMETRICS_CATALOG_JSON"
    exit 1
  fi
  run "$cxx" "$tmp/consumer-$cxx"
  grep -qx "catalog builtin: [0-9]* families" "$tmp/$cxx.out"
  grep -q 'no family has the key or name "vllm:no_such_family"' "$tmp/$cxx.out"
  if (cd "$tmp/empty" && "$tmp/consumer-$cxx" --shm.dir "$tmp" --catalog "$src/data/vllm_catalog.json") \
    2>"$tmp/nojson.err"; then
    echo "FAIL: --catalog worked without SHMETRICS_CATALOG_JSON"
    exit 1
  fi
  grep -q "no JSON loader (define SHMETRICS_CATALOG_JSON" "$tmp/nojson.err"

  if [ -f /usr/include/simdjson.h ]; then
    mkdir -p "$tmp/shm-$cxx-json"
    "$cxx" "${flags[@]}" -DSHMETRICS_CATALOG_JSON -I "$tmp/inc" "${consumer[@]}" \
      -o "$tmp/consumer-$cxx-json" -lsimdjson
    run "$cxx-json" "$tmp/consumer-$cxx-json" --catalog "$src/data/vllm_catalog.json"
    grep -qx "catalog $src/data/vllm_catalog.json: [0-9]* families" "$tmp/$cxx-json.out"
  else
    echo "note: simdjson not installed: SHMETRICS_CATALOG_JSON not built"
  fi
done
echo "catalog single header: ok"

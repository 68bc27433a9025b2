#!/usr/bin/env bash
# README.md's install line (and docs/using.md's, which must be the same) configures a
# build of the libraries and programs only:
#   - no target of tests/ or bench/, no sanitizer copy, no fuzz target;
#   - its install plan has everything the main build's has (programs, headers, libraries,
#     pkg-config, CMake, data; the man pages follow bin/ at install time), less the
#     benchmarks.
# Configures only (meson setup, no build).
#   readme_install_test.sh SOURCE_ROOT MAIN_BUILD_ROOT
set -euo pipefail
src=$(cd "$1" && pwd)
main=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/shmetrics-readme-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

# The `meson setup build --prefix=...` line of each document's install block.
line_of() { grep -m1 -E '^meson setup build --prefix=' "$1" || true; }
readme=$(line_of "$src/README.md")
using=$(line_of "$src/docs/using.md")
[ -n "$readme" ] || fail "README.md has no line 'meson setup build --prefix=...' (its install block)"
[ "$readme" = "$using" ] || fail "README.md and docs/using.md differ: '$readme' vs '$using'"
echo "README: $readme"
for opt in -Dtests=disabled -Dbench=disabled; do
  [[ " $readme " == *" $opt "* ]] || fail "README's install line lacks $opt"
done
read -ra args <<<"${readme#meson setup build }"
meson setup "$tmp/build" "$src" --wrap-mode=nodownload "${args[@]}" >"$tmp/setup.log" 2>&1 || {
  cat "$tmp/setup.log"
  fail "meson setup with README's options"
}

# What `ninja -C build` would build.
ninja -C "$tmp/build" -t targets all | cut -d: -f1 | grep -v '^\.\./\|^/' >"$tmp/targets"  # not the meson.build files
if grep -E '^(tests|bench)/|_(asan|tsan)([._]|$)|fuzz|catch_main' "$tmp/targets"; then
  fail "README's configuration builds the test, sanitizer or benchmark targets above"
fi
echo "$(wc -l <"$tmp/targets") ninja targets, none of tests/ or bench/"

# Its install plan against the main build's (each relative to its own prefix).
python3 - "$main/meson-info" "$tmp/build/meson-info" <<'PY'
import json, os, re, sys

def plan(info):
    prefix = next(o["value"] for o in json.load(open(os.path.join(info, "intro-buildoptions.json")))
                  if o["name"] == "prefix")
    return {os.path.relpath(d, prefix) for d in json.load(open(os.path.join(info, "intro-installed.json"))).values()}

bench = re.compile(r"(^|/)(shmetrics-bench|shmetrics-cuda-bench|python_mp_scrape\.py)$")
main, readme = plan(sys.argv[1]), plan(sys.argv[2])
missing = sorted(p for p in main - readme if not bench.search(p))
extra_bench = sorted(p for p in readme if bench.search(p))
for p in missing:
    print("FAIL: the main build installs it, README's does not:", p)
for p in extra_bench:
    print("FAIL: README's build installs a benchmark:", p)
bins = sorted(p for p in readme if p.startswith("bin/"))
print(f"{len(readme)} entries in README's install plan ({len(main)} in the main build's): " + ", ".join(bins))
for want in ("include/shmetrics", "bin/shmetrics-inspect"):  # the headers: one directory
    if want not in readme:
        print("FAIL: not in the install plan:", want)
        missing.append(want)
sys.exit(1 if missing or extra_bench else 0)
PY
echo "README install line: libraries and programs only, everything installed"

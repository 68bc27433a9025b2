#!/usr/bin/env bash
# shmetrics used from another project, end to end:
#   1. a fresh build of this source tree, `meson install`ed into a temporary prefix, and
#      again with DESTDIR; every file of the install plan must be there, every installed
#      program must print the segment format on --version and have a man page;
#   2. the prefix is then MOVED elsewhere (the install must be relocatable);
#   3. examples/consumer is built from a copy, with g++ and with clang++, each way:
#      the single header alone, pkg-config (make), meson from the install (pkg-config),
#      meson with shmetrics as a subproject, CMake find_package;
#   4. each build's consumer runs, and the installed shmetrics-inspect (and the
#      consumer's own reader and collector, where built) reads its metrics back.
#
#   install_test.sh SOURCE_ROOT
# Env: SHMETRICS_INSTALL_JOBS (ninja -j for the inner build, default 2),
#      SHMETRICS_INSTALL_KEEP=1 keeps the temporary directory.
set -euo pipefail
src=$(cd "$1" && pwd)
jobs=${SHMETRICS_INSTALL_JOBS:-2}
tmp=$(mktemp -d /tmp/shmetrics-install.XXXXXX)
if [ "${SHMETRICS_INSTALL_KEEP:-0}" = 1 ]; then
  echo "keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
fail() {
  echo "FAIL: $*"
  exit 1
}
step() { echo "== $*"; }
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH DESTDIR

# 1. Build and install.
step "meson setup + install into $tmp/usr (tests off)"
meson setup "$tmp/build" "$src" --prefix="$tmp/usr" --wrap-mode=nodownload \
  -Dtests=disabled -Dcuda=disabled -Dwerror=true >"$tmp/setup.log" || {
  cat "$tmp/setup.log"
  fail "meson setup"
}
ninja -C "$tmp/build" -j"$jobs" >"$tmp/ninja.log" || {
  tail -50 "$tmp/ninja.log"
  fail "build"
}
meson install -C "$tmp/build" --no-rebuild >"$tmp/install.log" || {
  cat "$tmp/install.log"
  fail "meson install"
}
DESTDIR="$tmp/stage" meson install -C "$tmp/build" --no-rebuild >"$tmp/install-destdir.log" || {
  cat "$tmp/install-destdir.log"
  fail "meson install with DESTDIR"
}

step "check the installed files (prefix and DESTDIR)"
python3 - "$tmp/build/meson-info/intro-installed.json" "$tmp/usr" "$tmp/stage" <<'PY' || exit 1
import json, os, sys
plan, prefix, stage = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
bad = []
for dest in plan.values():
    if not dest.startswith(prefix + "/"):
        bad.append(f"outside the prefix: {dest}")
    for p in (dest, stage + dest):
        if not os.path.exists(p):
            bad.append(f"missing: {p}")
if os.path.exists(stage + "/usr") or os.path.exists(stage + "/etc"):
    bad.append("DESTDIR install wrote outside DESTDIR/PREFIX")
print(f"{len(plan)} files in the install plan")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
for f in include/shmetrics/shmetrics.hpp include/shmetrics/version.hpp \
  include/shmetrics/reader/segment_reader.hpp include/shmetrics/reader/collector.hpp \
  bin/shmetrics-inspect; do
  [ -e "$tmp/usr/$f" ] || fail "not installed: $f"
done
pcdir=$(dirname "$(find "$tmp/usr" -name shmetrics.pc | head -1)")
[ -f "$pcdir/shmetrics.pc" ] || fail "no shmetrics.pc"
[ -f "$pcdir/shmetrics-reader.pc" ] || fail "no shmetrics-reader.pc"
cmdir=$(dirname "$(find "$tmp/usr" -name shmetricsConfig.cmake | head -1)")
[ -f "$cmdir/shmetricsConfigVersion.cmake" ] || fail "no CMake package"
# Every program prints the segment format on --version. Programs still being written
# (named in SHMETRICS_INSTALL_PENDING) only get a warning.
pending=" ${SHMETRICS_INSTALL_PENDING-} "
progs=0
for prog in "$tmp"/usr/bin/shmetrics-*; do
  name=$(basename "$prog")
  if ! v=$("$prog" --version 2>&1) || ! grep -q "segment format [0-9]*\.[0-9]*" <<<"$v"; then
    [[ $pending == *" $name "* ]] || fail "$name --version does not print the segment format: $v"
    echo "WARNING: $name --version does not print the segment format yet: $v"
  fi
  man=$(find "$tmp/usr" -path "*/man1/$name.1")
  [ -n "$man" ] || fail "no man page for $name"
  [ -f "$tmp/stage$man" ] || fail "no man page for $name under DESTDIR"
  grep -q '^\.TH' "$man" || fail "$man is not a man page"
  echo "$v; $(basename "$man")"
  progs=$((progs + 1))
done

# 2. Relocate: nothing may depend on the prefix the files were installed into.
step "move the prefix to $tmp/moved"
mv "$tmp/usr" "$tmp/moved"
prefix=$tmp/moved
pcdir=${pcdir/#$tmp\/usr/$prefix}
inspect=$prefix/bin/shmetrics-inspect
incdir=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags-only-I shmetrics-reader | sed 's/^-I//; s/ *$//')
[ "$(realpath "$incdir")" = "$prefix/include" ] || fail "shmetrics-reader.pc is not relocatable: -I$incdir"

# 3 + 4. Build the consumer every way, with both compilers, run it, read it back.
shm=$tmp/shm
mkdir -p "$shm"
flags="-Wall -Wextra -Wpedantic -Werror"
check() {  # check WAY: run the consumer and read its segment back
  local way=$1 dir=$2 reader=${3:-}
  "$dir/consumer" --version | grep -q "segment format" || fail "$way: consumer --version"
  "$dir/consumer" --shm.dir "$shm" --shm.prefix "$way" --keep >/dev/null || fail "$way: consumer"
  local out
  out=$("$inspect" --shm.dir "$shm" --shm.prefix "$way" show) || fail "$way: inspect show"
  grep -qx 'consumer_requests_total{model_name="consumer-model"} 42.0' <<<"$out" ||
    fail "$way: inspect did not read the counter back: $out"
  if [ -n "$reader" ]; then
    out=$("$dir/reader" "$shm" "$way") || fail "$way: reader"
    grep -qx 'consumer_latency_seconds_count{model_name="consumer-model"} 42.0' <<<"$out" ||
      fail "$way: reader did not read the histogram back: $out"
    # The collector (what the exporter serves): text, OpenMetrics, gzip.
    out=$("$dir/collect" "$shm" "$way") || fail "$way: collect"
    grep -qx 'consumer_requests_total{model_name="consumer-model"} 42.0' <<<"$out" ||
      fail "$way: collect did not serve the counter: $out"
    grep -qE '^shmetrics_exporter_segments\{state="(dead|closed)"\} 1.0$' <<<"$out" ||
      fail "$way: collect did not count the consumer's (exited) segment: $out"
    out=$("$dir/collect" "$shm" "$way" --openmetrics --gzip | gzip -dc) || fail "$way: collect --gzip"
    grep -qx 'consumer_requests_total{model_name="consumer-model"} 42.0' <<<"$out" &&
      [ "$(tail -1 <<<"$out")" = "# EOF" ] || fail "$way: collect --openmetrics --gzip: $out"
  fi
  echo "ok: $way"
}
fresh() {  # a copy of the consumer project, as another team would have it
  rm -rf "$1"
  mkdir -p "$1"
  cp "$src"/examples/consumer/{consumer.cpp,reader.cpp,collect.cpp,meson.build,CMakeLists.txt,Makefile} "$1"/
}

for cxx in g++ clang++; do
  command -v "$cxx" >/dev/null || fail "$cxx not found"
  cc=${cxx//+/x}
  # The single header: one file dropped into the project, nothing installed.
  step "$cxx: the single header"
  d=$tmp/$cc-single
  fresh "$d"
  mkdir -p "$d/third_party/shmetrics"
  cp "$src/single_include/shmetrics/shmetrics.hpp" "$d/third_party/shmetrics/"
  make -s -C "$d" single CXX="$cxx" CXXFLAGS="$flags -fno-exceptions" SINGLE_INCLUDE=third_party ||
    fail "$cxx: single header build"
  check "$cc-single" "$d"

  step "$cxx: pkg-config"
  d=$tmp/$cc-pkgconfig
  fresh "$d"
  PKG_CONFIG_PATH=$pcdir make -s -C "$d" CXX="$cxx" CXXFLAGS="$flags" || fail "$cxx: pkg-config build"
  check "$cc-pkgconfig" "$d" reader

  step "$cxx: meson, from the install"
  d=$tmp/$cc-meson
  fresh "$d"
  CXX=$cxx PKG_CONFIG_PATH=$pcdir meson setup "$d/b" "$d" --wrap-mode=nodownload \
    -Dwerror=true >"$d/setup.log" || {
    cat "$d/setup.log"
    fail "$cxx: meson setup (install)"
  }
  grep -q "Run-time dependency shmetrics found: YES" "$d/setup.log" || fail "$cxx: meson did not use shmetrics.pc"
  ninja -C "$d/b" >"$d/ninja.log" || {
    cat "$d/ninja.log"
    fail "$cxx: meson build (install)"
  }
  check "$cc-meson" "$d/b" reader

  step "$cxx: meson, shmetrics as a subproject"
  d=$tmp/$cc-subproject
  fresh "$d"
  mkdir -p "$d/subprojects"
  ln -s "$src" "$d/subprojects/shmetrics"
  CXX=$cxx meson setup "$d/b" "$d" --wrap-mode=nodownload -Dwerror=true \
    --force-fallback-for=shmetrics,shmetrics-reader >"$d/setup.log" || {
    cat "$d/setup.log"
    fail "$cxx: meson setup (subproject)"
  }
  grep -q "found: YES .*(overridden)" "$d/setup.log" || grep -q "Subproject shmetrics finished" "$d/setup.log" ||
    fail "$cxx: the subproject was not used"
  meson compile -C "$d/b" -j "$jobs" consumer reader collect >"$d/ninja.log" || {
    cat "$d/ninja.log"
    fail "$cxx: meson build (subproject)"
  }
  check "$cc-subproject" "$d/b" reader

  step "$cxx: CMake find_package"
  d=$tmp/$cc-cmake
  fresh "$d"
  cmake -S "$d" -B "$d/b" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CXX_FLAGS="$flags" >"$d/cmake.log" || {
    cat "$d/cmake.log"
    fail "$cxx: cmake configure"
  }
  cmake --build "$d/b" -j "$jobs" >"$d/build.log" || {
    cat "$d/build.log"
    fail "$cxx: cmake build"
  }
  check "$cc-cmake" "$d/b" reader
done

step "installed shmetrics-inspect lists every consumer's segment"
n=$("$inspect" --shm.dir "$shm" --shm.prefix gxx-single list | grep -c gxx-single || true)
[ "$n" -ge 1 ] || fail "inspect list"
echo "install test: $progs programs installed, 10 consumer builds ok"

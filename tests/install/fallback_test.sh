#!/usr/bin/env bash
# A machine without Debian's -dev packages: the wraps of subprojects/ build the writer,
# the reader and the exporter with `meson setup --wrap-mode=forcefallback`, offline.
#   1. a copy of the source tree gets the wraps' tarballs in subprojects/packagecache/:
#      the source tree's own where they are there, else from Debian's source packages
#      (scripts/fetch-wrap-sources); SKIP (77) when they cannot be had (no apt sources),
#      FAIL when Debian's source package has another tarball than the wrap names;
#   2. meson setup --wrap-mode=forcefallback with every proxy pointing at a closed port
#      and -Dlibdeflate=disabled (libdeflate has no wrap: the reader gzips with zlib's),
#      so that a tarball missing from the cache fails the setup instead of downloading;
#      the log must name each subproject and must not say "Downloading";
#   3. ninja -j2 builds only: the writer example, the reader library, the catalog (it
#      needs simdjson), shmetrics-exporter, and one Catch2 test;
#   4. they run: shmetrics-exporter --version, the example, the Catch2 test; and the
#      exporter links no system libz / libyaml-cpp (it took the subprojects').
#
#   fallback_test.sh SOURCE_ROOT
# Env: SHMETRICS_FALLBACK_JOBS (ninja -j, default 2), SHMETRICS_FALLBACK_KEEP=1 keeps
#      the temporary directory.
set -euo pipefail
src=$(cd "$1" && pwd)
jobs=${SHMETRICS_FALLBACK_JOBS:-2}
tmp=$(mktemp -d /tmp/shmetrics-fallback.XXXXXX)
if [ "${SHMETRICS_FALLBACK_KEEP:-0}" = 1 ]; then
  echo "keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
fail() {
  echo "FAIL: $*"
  exit 1
}
step() { echo "== $* ($SECONDS s)"; }
subprojects=(catch2 cpp-httplib simdjson yaml-cpp zlib)

# 1. The tree without build directories or extracted subprojects, and the tarballs.
step "copy the source tree to $tmp/src"
mkdir -p "$tmp/src/subprojects"
(cd "$src" && find . -mindepth 1 -maxdepth 1 ! -name .git ! -name 'build*' ! -name subprojects \
  -exec cp -a {} "$tmp/src/" \;)
cp -a "$src"/subprojects/*.wrap "$src/subprojects/packagefiles" "$tmp/src/subprojects/"
cache=$tmp/src/subprojects/packagecache
if [ -d "$src/subprojects/packagecache" ]; then
  cp -a "$src/subprojects/packagecache" "$cache"
fi
step "tarballs into subprojects/packagecache"
fetched=0
"$src/scripts/fetch-wrap-sources" "$cache" 2>"$tmp/fetch.err" || fetched=$?
if [ "$fetched" -ne 0 ]; then
  cat "$tmp/fetch.err"
  [ "$fetched" -eq 2 ] || fail "Debian's source packages do not carry the wraps' tarballs (above)"
  echo "SKIP: the wraps' tarballs could not be had from Debian's source packages (above);" \
    "put them in $src/subprojects/packagecache (scripts/fetch-wrap-sources) to run this test"
  exit 77
fi

# 2. Configure: every wrap'd dependency from its subproject, nothing downloaded.
step "meson setup --wrap-mode=forcefallback (no network for meson)"
dead=http://127.0.0.1:9
if ! env http_proxy=$dead https_proxy=$dead HTTP_PROXY=$dead HTTPS_PROXY=$dead no_proxy= NO_PROXY= \
  meson setup "$tmp/build" "$tmp/src" --wrap-mode=forcefallback \
  -Dtests=enabled -Dbench=disabled -Dcuda=disabled -Dfuzz=disabled -Dlibdeflate=disabled \
  >"$tmp/setup.log" 2>&1; then
  cat "$tmp/setup.log"
  fail "meson setup --wrap-mode=forcefallback"
fi
! grep -n "Downloading" "$tmp/setup.log" || fail "meson downloaded something (above)"
for sp in "${subprojects[@]}"; do
  grep -Eq "^Executing subproject ([^ ]*:)?$sp( |$)" "$tmp/setup.log" || fail "subproject $sp not used"
  grep -q "Using $sp source from cache" "$tmp/setup.log" || fail "$sp's tarball not taken from the cache"
  # override_dependency() in the subproject: the dependency() lookup took it, not the system's
  grep -Eq "^Dependency $sp found: YES .*\(overridden\)" "$tmp/setup.log" ||
    fail "dependency $sp is not the subproject's"
done
sed -n '/^  Configuration/,/^  User defined options/p' "$tmp/setup.log"

# 3. Build the minimal set of targets.
targets=(examples/shmetrics-example src/libshmetrics_reader.a src/catalog/libshmetrics_catalog.a
  exporter/shmetrics-exporter tests/multiprocess_test_unit tests/writer_child)
step "ninja -j$jobs ${targets[*]}"
ninja -C "$tmp/build" -j"$jobs" "${targets[@]}" >"$tmp/ninja.log" 2>&1 || {
  tail -40 "$tmp/ninja.log"
  fail "build"
}

# 4. Run them.
step "run"
v=$("$tmp/build/exporter/shmetrics-exporter" --version) || fail "shmetrics-exporter --version"
grep -q "segment format" <<<"$v" || fail "shmetrics-exporter --version: $v"
echo "$v"
if ldd "$tmp/build/exporter/shmetrics-exporter" | grep -E "libz\.so|libyaml-cpp"; then
  fail "shmetrics-exporter links the system's zlib or yaml-cpp (above), not the subprojects'"
fi
shm=$tmp/shm
mkdir -p "$shm"
"$tmp/build/examples/shmetrics-example" --shm.dir "$shm" --shm.prefix fallback --duration 0.2 \
  >/dev/null || fail "shmetrics-example"
"$tmp/build/tests/multiprocess_test_unit" || fail "multiprocess_test_unit (Catch2 from the wrap)"
step "built offline from subprojects/: ${subprojects[*]}"

#!/usr/bin/env bash
# README.md's first C++ block is a complete program: it compiles against include/ with
# -std=c++20 -pthread (warnings as errors) and runs to exit status 0.
#   readme_test.sh SOURCE_ROOT [CXX]
set -euo pipefail
src=$1 cxx=${2:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^```cpp[[:space:]]*$/ {f = 1; next} f && /^```/ {exit} f' "$src/README.md" >"$tmp/readme.cpp"
if ! grep -q 'int main' "$tmp/readme.cpp"; then
  echo "FAIL: README.md's first \`\`\`cpp block has no main()"
  exit 1
fi
"$cxx" -std=c++20 -Wall -Wextra -Wpedantic -Werror -I"$src/include" "$tmp/readme.cpp" -pthread \
  -o "$tmp/readme"
timeout 30 "$tmp/readme"
echo "README example: compiled and exited 0"

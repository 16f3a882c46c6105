#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` once, from the llama.cpp tree that the llama-cpp-python
# sdist vendors (pinned: the package registry serves it; nothing else is fetched), for a generic
# x86-64 CPU, statically linked, into a cache shared by every checkout and CI run:
#   $LLAMA_SERVER_CACHE/<version>/bin/llama-server   (default ~/.cache/compute-bridge/llama.cpp)
# then copied to $1 (the venv's bin/). Prints a heartbeat every 30 s; exits non-zero on failure.
# -DGGML_NATIVE=OFF: a native build from one machine crashed in decode on another.
# -DLLAMA_USE_PREBUILT_UI=OFF / -DLLAMA_BUILD_UI=OFF: its CMake would download a web UI.
set -euo pipefail
dest=${1:?usage: build-llama-server.sh DEST_DIR}
version=${LLAMA_CPP_PY_VERSION:-0.3.36}
python=${PYTHON:-python3}
cache=${LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/compute-bridge/llama.cpp}/$version
binary=$cache/bin/llama-server
if [ ! -x "$binary" ]; then
  echo "Building llama.cpp's llama-server ($version's vendored tree) for a generic x86-64 CPU:"
  echo "about 7 min once on 2 cores, cached in $cache for every later install."
  mkdir -p "$cache"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log=$cache/build.log
  start=$(date +%s)
  (
    set -e
    "$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
    tar xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
    src=$work/llama_cpp_python-$version/vendor/llama.cpp
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
      -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
      $(command -v ninja >/dev/null && echo -G Ninja)
    cmake --build "$work/build" --target llama-server -j "$(nproc)"
    mkdir -p "$cache/bin"
    cp "$work/build/bin/llama-server" "$binary.tmp" && mv "$binary.tmp" "$binary"
  ) > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    now=$(($(date +%s) - start))
    if [ $((now % 30)) -lt 5 ] && [ "$now" -ge 30 ]; then
      echo "  llama-server: $((now / 60)) min $((now % 60)) s, $(grep -o '\[[0-9]*/[0-9]*\]' "$log" | tail -n1)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 20 "$log"
    echo "llama-server did not build (log: $log)" >&2
    exit 1
  fi
  echo "llama-server built in $(($(date +%s) - start)) s."
fi
mkdir -p "$dest"
cp "$binary" "$dest/llama-server.tmp" && mv "$dest/llama-server.tmp" "$dest/llama-server"
echo "llama.cpp engine: $("$dest/llama-server" --version 2>&1 | grep -m1 version) ($dest/llama-server)"

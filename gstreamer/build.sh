#!/usr/bin/env bash
# Builds the GStreamer plugin artifacts/gstreamer/libgstxmem.so (xmemsink, xmemsrc) with gcc -Wall -Wextra -Werror
# against include/xmem.h only, linked to artifacts/native/libxmem.so (found at run time through the rpath
# $ORIGIN/../native). Needs Debian's libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev
# (scripts/install-deps.sh) and a built libxmem.so (scripts/build-native.sh calls this script after it).
#
# Usage: gstreamer/build.sh        then: GST_PLUGIN_PATH=artifacts/gstreamer gst-inspect-1.0 xmemsink
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ -f artifacts/native/libxmem.so ]] || { echo "gstreamer/build.sh: artifacts/native/libxmem.so is missing; run scripts/build-native.sh" >&2; exit 1; }
pkgs="gstreamer-1.0 gstreamer-base-1.0 gstreamer-video-1.0"
pkg-config --exists $pkgs || { echo "gstreamer/build.sh: $pkgs not found; run scripts/install-deps.sh" >&2; exit 1; }
mkdir -p artifacts/gstreamer
# shellcheck disable=SC2046
gcc -std=gnu11 -O2 -g -fPIC -shared -Wall -Wextra -Werror -fvisibility=hidden \
    -I include $(pkg-config --cflags $pkgs) \
    gstreamer/gstxmem.c gstreamer/xmemgst.c gstreamer/xmembufferpool.c gstreamer/xmemsink.c gstreamer/xmemsrc.c \
    -L artifacts/native -lxmem $(pkg-config --libs $pkgs) -Wl,-rpath,'$ORIGIN/../native' -Wl,--no-undefined \
    -o artifacts/gstreamer/libgstxmem.so
echo "gstreamer/build.sh: artifacts/gstreamer/libgstxmem.so ($(stat -c %s artifacts/gstreamer/libgstxmem.so) bytes)"
# The test driver of tests/python/test_gstreamer.py (state changes gst-launch-1.0 cannot make); outside
# artifacts/gstreamer so that the plugin scanner never looks at it.
mkdir -p artifacts/gstreamer-tests
# shellcheck disable=SC2046
gcc -std=gnu11 -O1 -Wall -Wextra -Werror $(pkg-config --cflags gstreamer-1.0) gstreamer/tests/state_cycles.c \
    $(pkg-config --libs gstreamer-1.0) -o artifacts/gstreamer-tests/state_cycles

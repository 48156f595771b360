#!/usr/bin/env bash
# What `make test` needs beyond Rust: Xvfb, xdotool and ImageMagick for the
# window test, the X11 libraries the window loads, and Python with venv for
# the independent protocol client. Installs what is missing when run as
# root on Debian; otherwise says what to install.
set -euo pipefail
need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xdotool >/dev/null || need+=(xdotool)
command -v import >/dev/null || need+=(imagemagick)
command -v python3 >/dev/null || need+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
for lib in libX11.so.6 libX11-xcb.so.1 libXcursor.so.1 libXi.so.6 libxkbcommon-x11.so.0; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || { need+=(libx11-6 libx11-xcb1 libxcursor1 libxi6 libxkbcommon-x11-0); break; }
done
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing test dependencies: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "make test needs these Debian packages: ${need[*]}" >&2
  echo "install them (sudo apt-get install ${need[*]}) and run make test again" >&2
  exit 1
fi

#!/usr/bin/env bash
# Installs the Debian packages the tests need (AVR toolchain, Arduino core, simavr, Qt's runtime
# libraries). As root it installs what is missing; otherwise it only says what is missing, and the
# tests that need those packages skip with a message naming them.
set -u
pkgs=(gcc-avr avr-libc arduino-core-avr arduino-mk arduino-builder simavr libsimavr-dev
      libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0)
command -v dpkg-query >/dev/null || { echo "sysdeps: not a Debian system; skipping"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "sysdeps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "sysdeps: apt-get failed; simavr/firmware tests will skip"; exit 0; }
else
  echo "sysdeps: missing ${missing[*]} (not root: install with 'sudo apt-get install ${missing[*]}');"
  echo "sysdeps: tests that need them will skip"
fi

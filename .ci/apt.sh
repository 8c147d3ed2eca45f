#!/usr/bin/env bash
# Install the Debian packages the recipes need, when we can; otherwise say what is missing.
# With CI=true a package that cannot be installed is an error (exit 1): CI must not pass
# green on a machine whose set-up is broken.
set -u
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
strict=0
[ "${CI:-}" = "true" ] && strict=1
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "setup: apt-get install failed for: ${missing[*]} (recipes that need them will say so)" >&2
else
  echo "setup: please install these Debian packages (needed by the recipes' corpus builders): ${missing[*]}" >&2
  echo "setup: e.g. sudo apt-get install ${missing[*]}" >&2
fi
if [ "$strict" = 1 ]; then
  echo "setup: CI=true: a missing Debian package is an error" >&2
  exit 1
fi
exit 0

#!/bin/sh
# A checkout of another revision beside this one, for same-run A/Bs
# (`npm run bench:hot -- --baseline DIR`): its own workspace links, this checkout's
# installed packages. Usage: sh scripts/baseline.sh REV [DIR]  (DIR default: /tmp/portcullis-baseline)
set -e
cd "$(dirname "$0")/.."
rev="${1:?usage: scripts/baseline.sh REV [DIR]}"
dir="${2:-/tmp/portcullis-baseline}"
here="$(pwd)"
rm -rf "$dir"
mkdir -p "$dir"
git archive "$rev" | tar -x -C "$dir"
mkdir -p "$dir/node_modules/@portcullis"
for entry in "$here"/node_modules/* "$here"/node_modules/.bin; do
  name="$(basename "$entry")"
  [ "$name" = "@portcullis" ] || ln -s "$entry" "$dir/node_modules/$name"
done
for pkg in shared router control-plane sdk; do
  [ -d "$dir/$pkg" ] && ln -s "../../$pkg" "$dir/node_modules/@portcullis/$pkg"
done
echo "$dir"

#!/usr/bin/env bash
# Builds rscp and performs two real copies of a generated tree, then checks them:
#   1. a local copy:            rscp -rp SRC DEST
#   2. a copy between the two remote ends, the way sshd runs them:
#      rscp -rp -f SRC  <=protocol=>  rscp -rp -t DEST
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin rscp
rscp=${CARGO_TARGET_DIR:-$PWD/target}/release/rscp

work=$(mktemp -d "${TMPDIR:-/tmp}/rscp-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/sub dir" "$work/src/empty" "$work/to-remote"
printf 'hello\n' > "$work/src/a.txt"
head -c 5000000 /dev/urandom > "$work/src/sub dir/random.bin"
: > "$work/src/sub dir/empty file"

"$rscp" -rp "$work/src" "$work/local-copy"
diff -r "$work/src" "$work/local-copy"
echo "local copy: ok"

mkfifo "$work/to-sink" "$work/from-sink"
(cd "$work/to-remote" && exec "$rscp" -rp -t . <"$work/to-sink" >"$work/from-sink") &
sink=$!
"$rscp" -rp -f "$work/src" >"$work/to-sink" <"$work/from-sink"
wait "$sink"
diff -r "$work/src" "$work/to-remote/src"
echo "rscp -f | rscp -t: ok"

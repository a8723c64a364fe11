#!/usr/bin/env bash
# Builds rscp and rscpd, then makes real copies of a generated tree and checks them:
#   1. a local copy:                    rscp -rp SRC DEST
#   2. up to a local rscpd and back:    rscp -rp SRC 127.0.0.1:up ; rscp -rp 127.0.0.1:up DOWN
#      over SSH on 127.0.0.1 with a throwaway client key; rscpd generates its host
#      key on first start (its default), and rscp pins it in a throwaway known_hosts.
# Needs ssh-keygen (package openssh-client) for the client key.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin rscp --bin rscpd
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
rscp=$bin/rscp

work=$(mktemp -d "${TMPDIR:-/tmp}/rscp-demo.XXXXXX")
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src/sub dir" "$work/src/empty" "$work/served"
printf 'hello\n' > "$work/src/a.txt"
head -c 5000000 /dev/urandom > "$work/src/sub dir/random.bin"
: > "$work/src/sub dir/empty file"

"$rscp" -rp "$work/src" "$work/local-copy"
diff -r "$work/src" "$work/local-copy"
echo "local copy: ok"

ssh-keygen -q -t ed25519 -N '' -C rscp-demo -f "$work/key"
XDG_DATA_HOME="$work/data" "$bin/rscpd" --listen 127.0.0.1:0 --root "$work/served" \
  --authorized-keys "$work/key.pub" >"$work/rscpd.out" 2>"$work/rscpd.log" &
server=$!
for _ in $(seq 100); do
  grep -q '^rscpd listening on ' "$work/rscpd.out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^rscpd listening on .*:\([0-9]*\)$/\1/p' "$work/rscpd.out")
[ -n "$port" ] || { echo "rscpd did not start:" >&2; cat "$work/rscpd.log" >&2; exit 1; }
sed -n 2p "$work/rscpd.out"
ssh_opts=(-P "$port" -i "$work/key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$work/known_hosts")

"$rscp" "${ssh_opts[@]}" -rp "$work/src" 127.0.0.1:up
diff -r "$work/src" "$work/served/up"
echo "upload to rscpd on port $port: ok"
"$rscp" "${ssh_opts[@]}" -rp 127.0.0.1:up "$work/down"
diff -r "$work/src" "$work/down"
echo "download from rscpd: ok"

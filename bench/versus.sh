#!/usr/bin/env bash
# The relay of this tree and of an earlier commit, beside the asyncio server, in the same peerbench runs.
#
#   bench/versus.sh REV [extra peerbench options]     e.g. bench/versus.sh e79c0fc
#
# Like regress.sh, with the asyncio server in the run too, so both gameframes get a
# ratio against it (`gameframe` = this tree, `gameframe-REV`). ORDER=... sets the
# servers' order. Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peerbench=${PEERBENCH:-$(cd "$repo/../shared/peerbench" && pwd)}
twistd=$(dirname "${GAMEFRAME_PYTHON:-$repo/.venv/bin/python}")/twistd
rev=${1:?usage: bench/versus.sh REV [peerbench options]}
shift
old=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git -C "$repo" worktree add -q --detach "$old" "$rev"
tcp="--web none --port tcp:{port}:interface=127.0.0.1"
relay="--room relay=bench.rooms:RelayRoom"
mkdir -p "$here/results/versus"
"$peerbench/run.sh" --outdir "$here/results/versus" --levels 50x10x10,4x50x10 --max-fails 9 \
  --servers "${ORDER:-asyncio-seed,gameframe-$rev,gameframe}" \
  --add "gameframe-$rev|9195|$here/adapter-tcp.js|env PYTHONPATH=$old $twistd -n --pidfile= gameframe $tcp $relay" \
  --add "gameframe|9190|$here/adapter-tcp.js|env PYTHONPATH=$repo $twistd -n --pidfile= gameframe $tcp $relay" "$@" \
  | grep -E "^(gameframe|asyncio)|efficiency"

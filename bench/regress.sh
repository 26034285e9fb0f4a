#!/usr/bin/env bash
# The relay hot path now against an earlier commit, in the same peerbench runs.
#
#   bench/regress.sh REV [runs] [extra peerbench options]     e.g. bench/regress.sh main~5 2
#
# Checks REV out into a temporary worktree, then runs peerbench's relay scenario at
# 50x10x10 and 4x50x10 with both servers (`gameframe` = this tree, `gameframe-REV`),
# alternating which goes first, `runs` times (default 2). Both run under this tree's
# venv; PYTHONPATH picks the code. Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peerbench=${PEERBENCH:-$(cd "$repo/../shared/peerbench" && pwd)}
twistd=$(dirname "${GAMEFRAME_PYTHON:-$repo/.venv/bin/python}")/twistd
rev=${1:?usage: bench/regress.sh REV [runs] [peerbench options]}
runs=${2:-2}
shift $(( $# > 1 ? 2 : 1 ))
old=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git -C "$repo" worktree add -q --detach "$old" "$rev"
serve() {  # serve CODE_DIR: the twistd command line peerbench starts
  echo "env PYTHONPATH=$1 $twistd -n --pidfile= gameframe --web none --port tcp:{port}:interface=127.0.0.1 --room relay=bench.rooms:RelayRoom"
}
for run in $(seq "$runs"); do
  if (( run % 2 )); then order="gameframe-$rev,gameframe"; else order="gameframe,gameframe-$rev"; fi
  mkdir -p "$here/results/regress"
  "$peerbench/run.sh" --outdir "$here/results/regress" --servers "$order" \
    --add "gameframe-$rev|9195|$here/adapter-tcp.js|$(serve "$old")" \
    --add "gameframe|9190|$here/adapter-tcp.js|$(serve "$repo")" \
    --levels 50x10x10,4x50x10 "$@" | grep -E "^gameframe|efficiency"
done

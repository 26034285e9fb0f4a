#!/usr/bin/env bash
# gameframe beside its peers, in one peerbench run per scenario; prints the ratios.
#
#   bench/run.sh [relay|state|ws|all] [extra peerbench options, e.g. --levels 50x10x10,4x50x10]
#   (state: STATE_SERVERS=gameframe-state,gameframe-state-compact,colyseus-state by default)
#   bench/run.sh cluster [bench/cluster.py options, e.g. --commands, --workers, --repeat 3]
#
# Servers are pinned to CPU 0 and the load generator to CPU 1 by peerbench; everything
# targets 127.0.0.1 and every run stops by itself. Results: bench/results/<scenario>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peerbench=${PEERBENCH:-$(cd "$repo/../shared/peerbench" && pwd)}
python=${GAMEFRAME_PYTHON:-$repo/.venv/bin/python}
twistd=$(dirname "$python")/twistd
scenario=${1:-all}
shift || true

if [ "$scenario" = cluster ]; then  # 2 nodes on Redis beside one process, with peerbench's load generator
  ulimit -n "$(ulimit -Hn)"
  exec env PEERBENCH="$peerbench" "$python" "$here/cluster.py" --python "$python" "$@"
fi

serve() {  # the twistd command line peerbench starts, with {port} for it to fill in
  echo "env PYTHONPATH=$repo $twistd -n --pidfile= gameframe $*"
}
tcp="--web none --port tcp:{port}:interface=127.0.0.1"

run() {  # run NAME SERVERS... -- peerbench options
  local name=$1; shift
  mkdir -p "$here/results/$name"
  "$peerbench/run.sh" --outdir "$here/results/$name" "$@"
}

relay="--room relay=bench.rooms:RelayRoom"
batched="--flush-interval ${FLUSH_MS:-20}"  # one send per player per 20 ms
case $scenario in relay|all)
  run relay --servers gameframe,gameframe-batched,asyncio-seed,node-relay \
    --add "gameframe|9190|$here/adapter-tcp.js|$(serve "$tcp" $relay)" \
    --add "gameframe-batched|9193|$here/adapter-tcp.js|$(serve "$tcp" $relay $batched)" "$@"
esac
case $scenario in state|all)
  # JSON Patches, compact patches (the clients ask "encoding": "compact") and Colyseus'
  # schema state (peerbench's adapter, its deliveries counted): each adapter appends its
  # bytes per delivery to results/state/bytes.jsonl (bench/_bytes.js).
  mkdir -p "$here/results/state" && : > "$here/results/state/bytes.jsonl"
  GF_BYTES_OUT="$here/results/state/bytes.jsonl" \
  run state --servers "${STATE_SERVERS:-gameframe-state,gameframe-state-compact,colyseus-state}" --skip-idle \
    --levels "${STATE_LEVELS:-25x10x10,50x10x10,100x10x10,150x10x10,2x50x10,4x50x10,10x50x10}" \
    --max-fails 99 \
    --add "gameframe-state|9191|$here/adapter-state.js|$(serve "$tcp" --room state=bench.rooms:StateRoom)" \
    --add "gameframe-state-compact|9196|$here/adapter-state-compact.js|$(serve "$tcp" --room state=bench.rooms:StateRoom)" \
    --add "colyseus-state|9105|$here/adapter-colyseus-state.js|node servers/colyseus_relay.mjs {port}" "$@"
  stamp=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["date_utc"])' "$here/results/state/latest.json")
  cp "$here/results/state/bytes.jsonl" "$here/results/state/bytes-$stamp.jsonl"  # beside results-$stamp.json
esac
ws="--port tcp:0:interface=127.0.0.1 --web tcp:{port}:interface=127.0.0.1"
case $scenario in ws|all)
  run ws --servers gameframe-ws,gameframe,gameframe-ws-batched,gameframe-batched --skip-idle --max-fails 9 \
    --levels "${WS_LEVELS:-50x10x10,4x50x10}" \
    --add "gameframe|9190|$here/adapter-tcp.js|$(serve "$tcp" $relay)" \
    --add "gameframe-ws|9192|$here/adapter-ws.js|$(serve "$ws" $relay)" \
    --add "gameframe-batched|9193|$here/adapter-tcp.js|$(serve "$tcp" $relay $batched)" \
    --add "gameframe-ws-batched|9194|$here/adapter-ws.js|$(serve "$ws" $relay $batched)" "$@"
esac
"$python" "$here/compare.py" "$here/results"

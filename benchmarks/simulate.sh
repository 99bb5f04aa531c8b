#!/usr/bin/env bash
# The simulation as measured in docs/ranking.md: a throwaway Redis, the seed region, the ranking
# model trained on the coupon survey (or the one already in OUT/model), gunicorn with two
# workers and OFFERS_EXPLORATION_SEED=7, then `offers simulate` against it.
#
#   benchmarks/simulate.sh OUT_DIR PORT [offers simulate options, e.g. --drivers 30 --steps 60]
#
# Writes OUT_DIR/simulation.json, simulation.png, sim.txt (the table) and server.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1; PORT=$2; shift 2
BIN=$PWD/.venv/bin
DATA=${SURVEY:-../shared/data/coupon/coupons_train.csv}
REDIS_DIR=$(mktemp -d)
redis-server --port $((PORT + 1000)) --dir "$REDIS_DIR" --save "" --appendonly no \
  --daemonize yes --logfile "$REDIS_DIR/log"
export REDIS_URL=redis://127.0.0.1:$((PORT + 1000))/0
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  redis-cli -p $((PORT + 1000)) shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p $((PORT + 1000)) ping >/dev/null 2>&1 && break; sleep 0.1; done
KEY=$("$BIN/offers" seed | awk '/^fleet/ {print $NF; exit}')
mkdir -p "$OUT"
[ -f "$OUT/model/model.json" ] || "$BIN/offers" ranking train --data "$DATA" \
  --format coupon-survey --out "$OUT/model" >/dev/null
"$BIN/offers" ranking publish "$OUT/model" --activate >/dev/null
OFFERS_EXPLORATION_SEED=7 "$BIN/gunicorn" -w 2 -b 127.0.0.1:$PORT "api.app:create_app()" \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 120); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.5; done
"$BIN/offers" simulate --url http://127.0.0.1:$PORT --fleet-key "$KEY" --out "$OUT" "$@" \
  | tee "$OUT/sim.txt"

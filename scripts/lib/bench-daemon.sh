# Sourced by scripts/bench-audit and scripts/bench-check: the stand-in on loopback and signed-in daemons with a
# cached token, in a scratch folder removed on exit. Needs FAKE_BIN and CLIENT_BIN; sets WORK, FAKE, FAKE_PID, PIDS
# (the processes killed on exit) and CLEANUP (files elsewhere removed on exit).
WORK=$(mktemp -d)
PIDS=()
CLEANUP=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK" "${CLEANUP[@]}"
}
trap cleanup EXIT

"$FAKE_BIN" --listen 127.0.0.1:0 --device-interval 1 --user adele@contoso.com >"$WORK/fake.out" 2>"$WORK/fake.log" &
FAKE_PID=$!
PIDS+=("$FAKE_PID")
for _ in $(seq 200); do grep -q '^listening on ' "$WORK/fake.out" 2>/dev/null && break; sleep 0.05; done
FAKE=$(sed -n 's/^listening on //p' "$WORK/fake.out" | head -n1)

# start_daemon NAME BINARY [FLAG...]: a signed-in daemon with a cached token; its pid in $WORK/NAME/pid.
start_daemon() {
  local name=$1 bin=$2 dir="$WORK/$1"
  shift 2
  mkdir -p "$dir" && chmod 700 "$dir"
  cat >"$dir/config.toml" <<TOML
default_profile = "demo"
keyring_service = "graphbroker-bench-$name"
[profiles.demo]
authority = "$FAKE/common"
graph_url = "$FAKE"
flow = "device"
scopes = ["User.Read"]
store = "memory"
TOML
  chmod 600 "$dir/config.toml"
  XDG_STATE_HOME="$dir/state" "$bin" --config "$dir/config.toml" --socket "$dir/run/s.sock" --log-level warn "$@" \
    2>"$dir/daemon.log" &
  echo $! >"$dir/pid"
  for _ in $(seq 200); do [ -S "$dir/run/s.sock" ] && break; sleep 0.05; done
  GRAPHBROKER_SOCKET="$dir/run/s.sock" "$CLIENT_BIN" --no-autostart token --scopes User.Read >/dev/null 2>&1 &
  local client=$! code=""
  for _ in $(seq 200); do
    code=$(curl -s --unix-socket "$dir/run/s.sock" http://localhost/v1/status | grep -o '"user_code":"[^"]*"' | head -n1 | cut -d'"' -f4 || true)
    [ -n "$code" ] && break; sleep 0.05
  done
  curl -s -X POST -H 'Content-Type: application/json' -d "{\"user_code\":\"$code\",\"user\":\"adele@contoso.com\"}" \
    "$FAKE/_control/device/approve" >/dev/null
  wait "$client"
}

# cpu PID: the process's utime + stime, in clock ticks (USER_HZ, 100 a second).
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

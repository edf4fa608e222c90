#!/usr/bin/env bash
# The systemd half of tests/service.rs's end-to-end test: a real `systemd --user` manager in this private mount
# namespace, graphbroker installed into it with `graphbroker-client service install`, checked from the outside.
#
# Run by the test as `unshare -m --propagation private bash service_e2e.sh`, as root, with the environment:
#   E2E_DIR        the test's directory (not under /tmp: the service has PrivateTmp=yes); holds home/, config/,
#                  runtime/, data/ and the logs
#   CLIENT         the graphbroker-client binary (graphbrokerd beside it is the daemon the service runs)
#   DAEMON         that graphbrokerd, to compare with the installed ExecStart
# It talks to the test over stdin/stdout: at each `PAUSE <step>` line it waits for one line on stdin (the test
# having made its requests), and it ends with `DONE`. Any failed check prints `FAIL: …` on stderr and exits 1.
# Every wait has a deadline; everything started here is stopped by PID on the way out.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "e2e: $*" >&2; }

# wait_for SECONDS WHAT CMD...: runs CMD until it succeeds, polling every 50 ms, for at most SECONDS.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not happen within ${seconds}s"
    sleep 0.05
  done
}

# pause STEP: lets the test do its part, then goes on when it writes a line.
pause() {
  echo "PAUSE $1"
  local reply
  read -r reply || fail "the test went away during step $1"
  [ "$reply" = go ] || fail "the test said '$reply' during step $1"
}

pids=()
daemon_pids=()
cleanup() {
  local status=$?
  set +e
  # The manager stops its units on SIGTERM (exit.target); then the bus and the keyring go.
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    local pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # A daemon the manager did not get to stop (it was killed itself) is stopped here, by the PIDs seen.
  for pid in "${daemon_pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

: "${E2E_DIR:?}" "${CLIENT:?}" "${DAEMON:?}"
export HOME=$E2E_DIR/home XDG_CONFIG_HOME=$E2E_DIR/config XDG_RUNTIME_DIR=$E2E_DIR/runtime XDG_DATA_HOME=$E2E_DIR/data
unset GRAPHBROKER_SOCKET GRAPHBROKERD_PATH DBUS_SESSION_BUS_ADDRESS NOTIFY_SOCKET LISTEN_FDS LISTEN_PID
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
socket=$XDG_RUNTIME_DIR/graphbroker/graphbroker.sock
units=$XDG_CONFIG_HOME/systemd/user

# systemd refuses to run a manager on a machine not booted with it; this namespace's own /run/systemd says it was.
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system

# The distribution's user units for a session bus and a keyring (dbus-user-session, gnome-keyring) would replace
# the ones started below with a bus of their own and a locked keyring: masked, in this test's unit directory only.
mkdir -p "$units"
for unit in dbus.socket dbus.service gnome-keyring-daemon.socket gnome-keyring-daemon.service; do
  ln -s /dev/null "$units/$unit"
done

# The session bus where a systemd session has it (dbus-user-session): $XDG_RUNTIME_DIR/bus. The service reaches it
# there; one under /tmp would be hidden by PrivateTmp=yes.
bus=$XDG_RUNTIME_DIR/bus
export DBUS_SESSION_BUS_ADDRESS=unix:path=$bus
dbus-daemon --session --nofork --nopidfile --address="$DBUS_SESSION_BUS_ADDRESS" 2>"$E2E_DIR/dbus.log" &
pids+=($!)
wait_for 10 "the session bus" test -S "$bus"
printf ci | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>"$E2E_DIR/keyring.log" &
pids+=($!)
has_secrets() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q "boolean true"
}
wait_for 10 "the Secret Service" has_secrets

# No journald here: a drop-in (the way a user would adjust the unit too) sends the daemon's log to daemon.log.
mkdir -p "$units/graphbroker.service.d"
printf '[Service]\nStandardOutput=append:%s\nStandardError=append:%s\n' "$E2E_DIR/daemon.log" "$E2E_DIR/daemon.log" \
  >"$units/graphbroker.service.d/test-log.conf"

/lib/systemd/systemd --user >"$E2E_DIR/manager.log" 2>&1 &
pids+=($!)
manager_up() { systemctl --user is-system-running 2>/dev/null | grep -Eq '^(running|degraded)$'; }
wait_for 20 "the user manager" manager_up
log "manager up"

# install: units written with the real daemon path, socket listening, service not started yet.
"$CLIENT" service install >"$E2E_DIR/install.out" 2>&1 || { cat "$E2E_DIR/install.out" >&2; fail "service install"; }
cat "$E2E_DIR/install.out" >&2
grep -qx "ExecStart=$DAEMON" "$units/graphbroker.service" || fail "ExecStart is not $DAEMON"
grep -q "ran systemctl --user enable --now graphbroker.socket" "$E2E_DIR/install.out" || fail "install did not say it enabled the socket"
[ "$(systemctl --user is-enabled graphbroker.socket)" = enabled ] || fail "graphbroker.socket is not enabled"
[ "$(systemctl --user is-active graphbroker.socket)" = active ] || fail "graphbroker.socket is not active"
[ "$(systemctl --user is-active graphbroker.service || true)" = inactive ] || fail "the service started before any request"
[ -S "$socket" ] || fail "no socket at $socket"
[ "$(stat -c %a "$socket")" = 600 ] || fail "socket mode is $(stat -c %a "$socket"), not 600"
[ "$(stat -c %a "$(dirname "$socket")")" = 700 ] || fail "socket directory mode is not 700"

# First request (the test's sign-in): the manager starts the service, which answers once READY=1.
pause signin
[ "$(systemctl --user is-active graphbroker.service)" = active ] || fail "the first request did not activate the service"
show() { systemctl --user show graphbroker.service -p "$1" --value; }
[ "$(show Type)" = notify ] || fail "Type is $(show Type)"
[ "$(show SubState)" = running ] || fail "SubState is $(show SubState)"
main_pid=$(show MainPID)
[ "$main_pid" -gt 0 ] || fail "no MainPID"
daemon_pids+=("$main_pid")
[ "$(readlink "/proc/$main_pid/exe")" = "$DAEMON" ] || fail "MainPID $main_pid is not $DAEMON"
status_text=$(show StatusText)
log "service active (pid $main_pid): $status_text"
[ -n "$status_text" ] || fail "the daemon sent no STATUS="
[ "$(show NRestarts)" = 0 ] || fail "the service restarted $(show NRestarts) times"

# The service stopped (socket kept): the next request starts it again, and its account comes back from the
# keychain through the sandbox.
systemctl --user stop graphbroker.service
[ "$(systemctl --user is-active graphbroker.service || true)" = inactive ] || fail "the service did not stop"
[ -S "$socket" ] || fail "stopping the service removed the socket"
pause restart
[ "$(systemctl --user is-active graphbroker.service)" = active ] || fail "the request after a stop did not activate the service"
main_pid=$(show MainPID)
daemon_pids+=("$main_pid")

# reload (ExecReload: SIGHUP) keeps the process and ends active again (RELOADING=1, then READY=1).
systemctl --user reload graphbroker.service || fail "reload failed"
[ "$(show MainPID)" = "$main_pid" ] || fail "reload replaced the process"
[ "$(systemctl --user is-active graphbroker.service)" = active ] || fail "not active after a reload"

# A crash (SIGKILL) is a failure: Restart=on-failure starts the daemon again at once, not only on the next request.
kill -KILL "$main_pid"
restarted() { [ "$(show NRestarts)" = 1 ] && [ "$(systemctl --user is-active graphbroker.service)" = active ]; }
wait_for 10 "a restart after a crash" restarted
main_pid=$(show MainPID)
daemon_pids+=("$main_pid")

"$CLIENT" service status >"$E2E_DIR/status.out" 2>&1 || { cat "$E2E_DIR/status.out" >&2; fail "service status"; }
cat "$E2E_DIR/status.out" >&2
grep -q "^graphbroker.socket: installed; is-enabled enabled, is-active active$" "$E2E_DIR/status.out" || fail "status: socket line"
grep -q "^graphbroker.service: installed, runs $DAEMON; is-enabled .*, is-active active$" "$E2E_DIR/status.out" || fail "status: service line"
grep -qx "socket: $socket (present)" "$E2E_DIR/status.out" || fail "status: socket path"

# Stopping the socket stops the service (Requires=) and removes the socket file (RemoveOnStop=yes).
systemctl --user stop graphbroker.socket
[ "$(systemctl --user is-active graphbroker.service || true)" = inactive ] || fail "stopping the socket left the service running"
[ ! -e "$socket" ] || fail "stopping the socket left $socket behind"
[ "$(show Result)" = success ] || fail "the service stopped with result $(show Result)"

"$CLIENT" service uninstall >"$E2E_DIR/uninstall.out" 2>&1 || { cat "$E2E_DIR/uninstall.out" >&2; fail "service uninstall"; }
cat "$E2E_DIR/uninstall.out" >&2
[ ! -e "$units/graphbroker.socket" ] && [ ! -e "$units/graphbroker.service" ] || fail "uninstall left unit files"
[ ! -e "$units/sockets.target.wants/graphbroker.socket" ] || fail "uninstall left the socket enabled"
[ "$(systemctl --user is-active graphbroker.socket || true)" = inactive ] || fail "uninstall left the socket active"

echo DONE

# shellcheck shell=bash
# Sourced by scripts/bench-check and `scripts/bench proxy` after scripts/lib/bench-daemon.sh: the Graph proxy's
# cost (issue 23 part 4), each side measured by the same tool in the same way, curl 7.63 or later (not the
# project's own code), alternating:
# - proxy_small: a small `GET /v1.0/me`, through the proxy (curl over the daemon's Unix socket, `/graph/v1.0/me`)
#   and direct (curl over loopback TCP to the stand-in, with `Authorization: Bearer` and a token taken once from
#   the daemon). One curl process per side and round makes PROXY_SMALL_N keep-alive transfers (`--config` with
#   that many `url =` lines) and prints each one's `%{time_total}`; the first PROXY_SMALL_WARM of each process
#   (the connect, the proxy's pool) are dropped; PROXY_SMALL_ROUNDS rounds, sides alternating. p50 over all the
#   kept transfers of a side.
# - proxy_bulk: PROXY_BULK_MIB MiB down and up, each through the proxy and direct, alternating, PROXY_BULK_ROUNDS
#   rounds; each side's median of curl's `%{speed_download}` / `%{speed_upload}`, and the ratio as the median
#   of the rounds' proxy / direct ratios (the two sides of a round run back to back). The download is a mail
#   attachment's `$value` (Mail.Read), which Graph serves as a 200 body, so it streams through the daemon (a drive
#   item's `/content` answers a 302 the proxy passes back: its bytes never cross the daemon; that download, the
#   302 then the pre-authenticated URL fetched without a token, is a third transfer, "drive", reported beside
#   the others with the bytes over both calls' time, never a verdict). The upload is a
#   drive item's `PUT …/root:/{name}:/content` (Files.ReadWrite) of a file in /dev/shm (`curl -T FILE`, with
#   Content-Length), as a program uploads a file; PROXY_UPLOAD_FROM=pipe sends `head -c … /dev/zero` through a
#   pipe instead (`curl -T -`, chunked), which puts a fourth busy process on the machine. The stand-in generates
#   the download and hashes the upload as they stream, on its one thread, for both sides alike. During each
#   proxied transfer VmRSS of the daemon is read from /proc/PID/status every 20 ms; the peak and the daemon's
#   VmHWM afterwards are reported.
# - When socat is installed, a third side in both: the direct call's curl through a bare relay, `socat -b 262144
#   UNIX-LISTEN:… TCP:…` (C, one copy loop, no HTTP), the floor of any extra hop over a Unix socket on the machine.
#   Reported beside the proxy's figures, never a verdict.
#
# Needs WORK, FAKE, FAKE_PID, and SOCK and DPID (the signed-in daemon, from start_daemon); sets the PROXY_* results.
PROXY_SMALL_N=${PROXY_SMALL_N:-2000}
PROXY_SMALL_WARM=${PROXY_SMALL_WARM:-50}
PROXY_SMALL_ROUNDS=${PROXY_SMALL_ROUNDS:-5}
PROXY_BULK_MIB=${PROXY_BULK_MIB:-512}
PROXY_BULK_ROUNDS=${PROXY_BULK_ROUNDS:-5}
PROXY_SCOPES="User.Read Files.ReadWrite Mail.Read"
BULK_SCOPES="Files.ReadWrite Mail.Read"

# The stand-in's user consents to the scopes the proxied calls ask for (the consent given at a sign-in), so the
# daemon redeems its refresh token for them without a second sign-in; then the tokens for the direct side, taken
# once from the daemon, go into curl config files only (0600, never on a command line).
proxy_setup() {
  local scopes_json client_id
  local -a scopes
  read -ra scopes <<<"$PROXY_SCOPES"
  scopes_json=$(printf '"%s",' "${scopes[@]}")
  client_id=$(curl -fsS --unix-socket "$SOCK" http://localhost/v1/config \
    | grep -o '"key":"profiles.demo.client_id","value":"[^"]*"' | cut -d'"' -f8)
  curl -fsS -X POST -H 'Content-Type: application/json' \
    -d "{\"user\":\"adele@contoso.com\",\"client_id\":\"$client_id\",\"scopes\":[${scopes_json%,}]}" \
    "$FAKE/_control/consent" >/dev/null
  local mask
  mask=$(umask)
  umask 077
  proxy_token_config User.Read "$WORK/direct-me.curl"
  proxy_token_config "$BULK_SCOPES" "$WORK/direct-bulk.curl"
  umask "$mask"
  PROXY_SIDES="proxy direct"
  RELAY_SOCK=""
  if command -v socat >/dev/null 2>&1; then
    RELAY_SOCK="$WORK/relay.sock"
    socat -b 262144 "UNIX-LISTEN:$RELAY_SOCK,fork" "TCP:${FAKE#http://}" &
    PIDS+=($!)
    for _ in $(seq 200); do [ -S "$RELAY_SOCK" ] && break; sleep 0.05; done
    PROXY_SIDES="proxy relay direct"
  fi
}

# The sides of round R: each round starts one further along, so that no side always follows the same one.
sides_of() {
  local -a s
  read -ra s <<<"$PROXY_SIDES"
  local n=${#s[@]} i out=""
  for i in $(seq 0 $((n - 1))); do out+=" ${s[$(((i + $1) % n))]}"; done
  echo "$out"
}

# proxy_token_config SCOPES FILE: a curl config carrying `Authorization: Bearer` for SCOPES.
proxy_token_config() {
  local token
  token=$(curl -fsS --unix-socket "$SOCK" -G --data-urlencode "scopes=$1" http://localhost/v1/token \
    | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4)
  [ -n "$token" ] || { echo "bench-proxy: the daemon gave no token for $1" >&2; return 1; }
  printf 'header = "Authorization: Bearer %s"\n' "$token" >"$2"
}

# p50 of the numbers in FILE (one a line).
median() {
  sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
# pct P FILE: the P-th percentile (nearest rank).
pct() {
  sort -n "$2" | awk -v p="$1" '{a[NR] = $1} END {i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'
}

# urls URL: PROXY_SMALL_N `url =` lines of URL, for a curl config.
urls() { seq "$PROXY_SMALL_N" | awk -v u="$1" '{printf "url = \"%s\"\n", u}'; }

# small_round SIDE OUT: one curl process, PROXY_SMALL_N transfers of /me, the kept times (us) appended to OUT.
small_round() {
  local side=$1 out=$2 cfg="$WORK/small-$1.curl" raw="$WORK/small-$1.raw"
  case $side in
    proxy)
      { echo 'header = "X-Graphbroker-Scopes: User.Read"'; urls "http://localhost/graph/v1.0/me"; } >"$cfg"
      curl -sS --unix-socket "$SOCK" -K "$cfg" -w '%{stderr}%{http_code} %{time_total}\n' >/dev/null 2>"$raw"
      ;;
    relay)
      { cat "$WORK/direct-me.curl"; urls "$FAKE/v1.0/me"; } >"$cfg"
      curl -sS --unix-socket "$RELAY_SOCK" -K "$cfg" -w '%{stderr}%{http_code} %{time_total}\n' >/dev/null 2>"$raw"
      ;;
    direct)
      { cat "$WORK/direct-me.curl"; urls "$FAKE/v1.0/me"; } >"$cfg"
      curl -sS -K "$cfg" -w '%{stderr}%{http_code} %{time_total}\n' >/dev/null 2>"$raw"
      ;;
  esac
  local bad
  bad=$(awk '$1 != 200' "$raw" | head -n3)
  [ -z "$bad" ] || { echo "bench-proxy: $side GET /me answered: $bad" >&2; return 1; }
  awk -v w="$PROXY_SMALL_WARM" 'NR > w {printf "%.1f\n", $2 * 1e6}' "$raw" | tee "$WORK/small-$side.round" >>"$out"
}

# proxy_small: sets PROXY_ME_P50, DIRECT_ME_P50 and RELAY_ME_P50 (us; the last empty without socat), and
# PROXY_ME_DETAIL (each round's p50, p90, p99).
proxy_small() {
  local r side ticks=0
  declare -A rounds=()
  for side in $PROXY_SIDES; do : >"$WORK/small-$side.all"; done
  for r in $(seq "$PROXY_SMALL_ROUNDS"); do
    for side in $(sides_of "$r"); do
      local c0
      c0=$(cpu "$DPID")
      small_round "$side" "$WORK/small-$side.all"
      rounds[$side]+=" $(median "$WORK/small-$side.round")"
      [ "$side" != proxy ] || ticks=$((ticks + $(cpu "$DPID") - c0))
    done
  done
  PROXY_ME_P50=$(median "$WORK/small-proxy.all")
  DIRECT_ME_P50=$(median "$WORK/small-direct.all")
  RELAY_ME_P50=""
  [ -z "$RELAY_SOCK" ] || RELAY_ME_P50=$(median "$WORK/small-relay.all")
  PROXY_ME_DETAIL=""
  for side in $PROXY_SIDES; do
    PROXY_ME_DETAIL+="GET /me, $side: p50 each round${rounds[$side]} us; all: p50 $(median "$WORK/small-$side.all") p90 \
$(pct 90 "$WORK/small-$side.all") p99 $(pct 99 "$WORK/small-$side.all") us
"
  done
  PROXY_ME_DETAIL+="daemon CPU (utime + stime) per proxied GET /me: $(awk -v t="$ticks" \
    -v n=$((PROXY_SMALL_ROUNDS * PROXY_SMALL_N)) 'BEGIN {printf "%.0f", t * 10000 / n}') us
"
  PROXY_ME_DETAIL+="transfers kept per side: $(wc -l <"$WORK/small-proxy.all") ($PROXY_SMALL_ROUNDS rounds of \
$PROXY_SMALL_N, the first $PROXY_SMALL_WARM of each dropped)"
}

# rss_sampler PID OUT: VmRSS (KiB) every 20 ms into OUT until killed.
rss_sampler() {
  local k v _
  while :; do
    while read -r k v _; do [ "$k" = VmRSS: ] && echo "$v"; done <"/proc/$1/status"
    sleep 0.02
  done >"$2"
}

# bulk_once SIDE DIRECTION: one transfer; prints curl's bytes/s (and checks the status and the size).
bulk_once() {
  local side=$1 dir=$2 size=$((PROXY_BULK_MIB * 1024 * 1024)) out="$WORK/bulk.out" sampler=""
  local curl_side=(-K "$WORK/direct-bulk.curl") base="$FAKE"
  [ "$side" != relay ] || curl_side+=(--unix-socket "$RELAY_SOCK")
  if [ "$side" = proxy ]; then
    curl_side=(--unix-socket "$SOCK" -H "X-Graphbroker-Scopes: $BULK_SCOPES")
    base="http://localhost/graph"
    rss_sampler "$DPID" "$WORK/rss-$dir-$side.$RANDOM" &
    sampler=$!
  fi
  if [ "$dir" = down ]; then
    curl -sS "${curl_side[@]}" -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' \
      "$base/v1.0/me/messages/$ATT_MESSAGE/attachments/$ATT_ID/\$value" >"$out"
  elif [ "$dir" = drive ]; then
    # A drive item as a program downloads it: Graph's 302 (through the proxy on that side), then the
    # pre-authenticated URL fetched without any token, on no socket of the daemon's. Bytes over both times.
    local item code1 time1 location
    item=$(grep -o '"id":"[^"]*"' "$WORK/item.json" | head -n1 | cut -d'"' -f4)
    read -r code1 time1 location < <(curl -sS "${curl_side[@]}" -o /dev/null \
      -w '%{http_code} %{time_total} %{redirect_url}\n' "$base/v1.0/me/drive/items/$item/content")
    if [ "$code1" != 302 ] || [ -z "$location" ]; then
      echo "bench-proxy: $side drive item answered $code1, not a redirect" >&2
      return 1
    fi
    curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' "$location" \
      | awk -v t="$time1" '{printf "%s %s %.0f\n", $1, $2, $2 / ($3 + t)}' >"$out"
  else
    local put=(-H 'Content-Type: application/octet-stream' -o "$WORK/item.json"
      -w '%{http_code} %{size_upload} %{speed_upload}\n' "$base/v1.0/me/drive/root:/bench-$side.bin:/content")
    if [ "${PROXY_UPLOAD_FROM:-file}" = pipe ]; then
      head -c "$size" /dev/zero | curl -sS "${curl_side[@]}" -T - "${put[@]}" >"$out"
    else
      curl -sS "${curl_side[@]}" -T "$UPLOAD_FILE" "${put[@]}" >"$out"
    fi
  fi
  [ -z "$sampler" ] || { kill "$sampler"; wait "$sampler" 2>/dev/null || true; }
  local want=200
  [ "$dir" != up ] || want=201
  read -r code bytes speed <"$out"
  # A chunked upload's count includes the framing: the size checked is the one the stand-in received.
  [ "$dir" != up ] || bytes=$(grep -o '"size":[0-9]*' "$WORK/item.json" | cut -d: -f2)
  if [ "$code" != "$want" ] || [ "$bytes" != "$size" ]; then
    echo "bench-proxy: $side $dir answered $code after $bytes of $size bytes" >&2
    return 1
  fi
  echo "$speed"
}

# proxy_bulk: sets PROXY_DOWN, DIRECT_DOWN, PROXY_UP, DIRECT_UP (MiB/s, medians), DOWN_PCT, UP_PCT and
# DRIVE_PCT (the medians of the rounds' ratios), RSS_BASE, RSS_PEAK, RSS_HWM (KiB)
# and PROXY_BULK_DETAIL.
proxy_bulk() {
  local size=$((PROXY_BULK_MIB * 1024 * 1024)) att
  att=$(curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"user\":\"adele@contoso.com\",\"size\":$size}" \
    "$FAKE/_control/attachment")
  ATT_MESSAGE=$(echo "$att" | grep -o '"message_id":"[^"]*"' | cut -d'"' -f4)
  ATT_ID=$(echo "$att" | grep -o '"attachment_id":"[^"]*"' | cut -d'"' -f4)
  # Warm the proxy's pool and token for these scopes before the baseline, with a small attachment.
  att=$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{"user":"adele@contoso.com","size":1024}' \
    "$FAKE/_control/attachment")
  curl -fsS --unix-socket "$SOCK" -H "X-Graphbroker-Scopes: $BULK_SCOPES" -o /dev/null \
    "http://localhost/graph/v1.0/me/messages/$(echo "$att" | grep -o '"message_id":"[^"]*"' | cut -d'"' -f4)\
/attachments/$(echo "$att" | grep -o '"attachment_id":"[^"]*"' | cut -d'"' -f4)/\$value"
  # The file to upload: in memory (/dev/shm) where there is one, so that no disk writeback runs meanwhile.
  UPLOAD_FILE=$(mktemp /dev/shm/graphbroker-bench.XXXXXX 2>/dev/null || mktemp "$WORK/upload.XXXXXX")
  CLEANUP+=("$UPLOAD_FILE")
  head -c "$size" /dev/zero >"$UPLOAD_FILE"
  RSS_BASE=$(awk '/^VmRSS:/ {print $2}' "/proc/$DPID/status")
  local r dir side
  for dir in down up drive; do for side in $PROXY_SIDES; do : >"$WORK/bulk-$side-$dir"; done; done
  for r in $(seq "$PROXY_BULK_ROUNDS"); do
    # drive after up: it downloads the item the last upload made.
    for dir in down up drive; do
      for side in $(sides_of "$r"); do
        bulk_once "$side" "$dir" | awk '{printf "%.1f\n", $1 / 1048576}' >>"$WORK/bulk-$side-$dir"
        [ "${PIPESTATUS[0]}" = 0 ] || return 1
      done
    done
  done
  PROXY_DOWN=$(median "$WORK/bulk-proxy-down")
  DIRECT_DOWN=$(median "$WORK/bulk-direct-down")
  PROXY_UP=$(median "$WORK/bulk-proxy-up")
  DIRECT_UP=$(median "$WORK/bulk-direct-up")
  # Each round's proxy / direct, in per cent; the median of those is the verdict's figure.
  for dir in down up drive; do
    paste -d' ' "$WORK/bulk-proxy-$dir" "$WORK/bulk-direct-$dir" | awk '{printf "%.1f\n", 100 * $1 / $2}' \
      >"$WORK/bulk-ratio-$dir"
  done
  DOWN_PCT=$(median "$WORK/bulk-ratio-down")
  UP_PCT=$(median "$WORK/bulk-ratio-up")
  DRIVE_PCT=$(median "$WORK/bulk-ratio-drive")
  RELAY_DOWN_PCT="" RELAY_UP_PCT=""
  if [ -n "$RELAY_SOCK" ]; then
    for dir in down up; do
      paste -d' ' "$WORK/bulk-relay-$dir" "$WORK/bulk-direct-$dir" | awk '{printf "%.1f\n", 100 * $1 / $2}' \
        >"$WORK/bulk-relay-ratio-$dir"
    done
    RELAY_DOWN_PCT=$(median "$WORK/bulk-relay-ratio-down")
    RELAY_UP_PCT=$(median "$WORK/bulk-relay-ratio-up")
  fi
  rm -f "$UPLOAD_FILE"
  RSS_PEAK=$(cat "$WORK"/rss-*-proxy.* | sort -n | tail -n1)
  RSS_HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")
  PROXY_BULK_DETAIL=""
  for dir in down up drive; do
    PROXY_BULK_DETAIL+="$PROXY_BULK_MIB MiB $dir, MiB/s each round:"
    for side in $PROXY_SIDES; do PROXY_BULK_DETAIL+=" $side $(paste -sd' ' "$WORK/bulk-$side-$dir");"; done
    PROXY_BULK_DETAIL+=" proxy / direct each round: $(paste -sd' ' "$WORK/bulk-ratio-$dir") %
"
  done
  local samples fake_hwm
  samples=$(cat "$WORK"/rss-*-proxy.* | wc -l)
  fake_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$FAKE_PID/status")
  PROXY_BULK_DETAIL+="daemon VmRSS: $((RSS_BASE / 1024)) MiB before, peak $((RSS_PEAK / 1024)) MiB while streaming \
($samples samples); VmHWM $((RSS_HWM / 1024)) MiB
stand-in VmHWM after every transfer: $((fake_hwm / 1024)) MiB (it streams both ways too)"
}

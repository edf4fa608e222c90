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
#   rounds; the median of each side's curl `%{speed_download}` / `%{speed_upload}`. The download is a mail
#   attachment's `$value` (Mail.Read), which Graph serves as a 200 body, so it streams through the daemon (a drive
#   item's `/content` answers a 302 the proxy passes back: its bytes never cross the daemon). The upload is a
#   drive item's `PUT …/root:/{name}:/content` (Files.ReadWrite), the body from `head -c … /dev/zero` through a
#   pipe (`curl -T -`, chunked, both sides). The stand-in generates the download and hashes the upload as they
#   stream, on its one thread, for both sides alike. During each proxied transfer VmRSS of the daemon is read from
#   /proc/PID/status every 20 ms; the peak and the daemon's VmHWM afterwards are reported.
#
# Needs WORK, FAKE, and SOCK and DPID (the signed-in daemon, from start_daemon); sets the PROXY_* results.
PROXY_SMALL_N=${PROXY_SMALL_N:-2000}
PROXY_SMALL_WARM=${PROXY_SMALL_WARM:-50}
PROXY_SMALL_ROUNDS=${PROXY_SMALL_ROUNDS:-5}
PROXY_BULK_MIB=${PROXY_BULK_MIB:-512}
PROXY_BULK_ROUNDS=${PROXY_BULK_ROUNDS:-3}
PROXY_SCOPES="User.Read Files.ReadWrite Mail.Read"
BULK_SCOPES="Files.ReadWrite Mail.Read"

# The stand-in's user consents to the scopes the proxied calls ask for (as an admin would grant them), so the
# daemon redeems its refresh token for them without a second sign-in; then the tokens for the direct side, taken
# once from the daemon, go into curl config files only (0600, never on a command line).
proxy_setup() {
  local scopes_json client_id
  scopes_json=$(printf '"%s",' $PROXY_SCOPES)
  client_id=$(curl -fsS --unix-socket "$SOCK" http://localhost/v1/config \
    | grep -o '"key":"profiles.demo.client_id","value":"[^"]*"' | cut -d'"' -f8)
  curl -fsS -X POST -H 'Content-Type: application/json' \
    -d "{\"user\":\"adele@contoso.com\",\"client_id\":\"$client_id\",\"scopes\":[${scopes_json%,}]}" \
    "$FAKE/_control/consent" >/dev/null
  umask 077
  proxy_token_config User.Read "$WORK/direct-me.curl"
  proxy_token_config "$BULK_SCOPES" "$WORK/direct-bulk.curl"
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
median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# pct P FILE: the P-th percentile (nearest rank).
pct() { sort -n "$2" | awk -v p="$1" '{a[NR] = $1} END {i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'; }

# urls URL: PROXY_SMALL_N `url =` lines of URL, for a curl config.
urls() { seq "$PROXY_SMALL_N" | awk -v u="$1" '{printf "url = \"%s\"\n", u}'; }

# small_round SIDE OUT: one curl process, PROXY_SMALL_N transfers of /me, the kept times (us) appended to OUT.
small_round() {
  local side=$1 out=$2 cfg="$WORK/small-$1.curl" raw="$WORK/small-$1.raw"
  if [ "$side" = proxy ]; then
    { echo 'header = "X-Graphbroker-Scopes: User.Read"'; urls "http://localhost/graph/v1.0/me"; } >"$cfg"
    curl -sS --unix-socket "$SOCK" -K "$cfg" -w '%{stderr}%{http_code} %{time_total}\n' >/dev/null 2>"$raw"
  else
    { cat "$WORK/direct-me.curl"; urls "$FAKE/v1.0/me"; } >"$cfg"
    curl -sS -K "$cfg" -w '%{stderr}%{http_code} %{time_total}\n' >/dev/null 2>"$raw"
  fi
  local bad
  bad=$(awk '$1 != 200' "$raw" | head -n3)
  [ -z "$bad" ] || { echo "bench-proxy: $side GET /me answered: $bad" >&2; return 1; }
  awk -v w="$PROXY_SMALL_WARM" 'NR > w {printf "%.1f\n", $2 * 1e6}' "$raw" | tee "$WORK/small-$side.round" >>"$out"
}

# proxy_small: sets PROXY_ME_P50 and DIRECT_ME_P50 (us), PROXY_ME_DETAIL (per-round p50s, p90, p99).
proxy_small() {
  : >"$WORK/small-proxy.all"
  : >"$WORK/small-direct.all"
  local r rounds_p="" rounds_d=""
  for r in $(seq "$PROXY_SMALL_ROUNDS"); do
    # Alternate which side goes first, so neither always runs just after the other.
    local order="proxy direct"
    [ $((r % 2)) = 0 ] && order="direct proxy"
    for side in $order; do
      small_round "$side" "$WORK/small-$side.all"
      if [ "$side" = proxy ]; then rounds_p+=" $(median "$WORK/small-proxy.round")"; else rounds_d+=" $(median "$WORK/small-direct.round")"; fi
    done
  done
  PROXY_ME_P50=$(median "$WORK/small-proxy.all")
  DIRECT_ME_P50=$(median "$WORK/small-direct.all")
  PROXY_ME_DETAIL="proxy p50 per round:${rounds_p} us; p90 $(pct 90 "$WORK/small-proxy.all") p99 $(pct 99 "$WORK/small-proxy.all") us
direct p50 per round:${rounds_d} us; p90 $(pct 90 "$WORK/small-direct.all") p99 $(pct 99 "$WORK/small-direct.all") us
transfers kept per side: $(wc -l <"$WORK/small-proxy.all") ($PROXY_SMALL_ROUNDS rounds of $PROXY_SMALL_N, first $PROXY_SMALL_WARM of each dropped)"
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
  if [ "$side" = proxy ]; then
    curl_side=(--unix-socket "$SOCK" -H "X-Graphbroker-Scopes: $BULK_SCOPES")
    base="http://localhost/graph"
    rss_sampler "$DPID" "$WORK/rss-$dir-$side.$RANDOM" &
    sampler=$!
  fi
  if [ "$dir" = down ]; then
    curl -sS "${curl_side[@]}" -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' \
      "$base/v1.0/me/messages/$ATT_MESSAGE/attachments/$ATT_ID/\$value" >"$out"
  else
    head -c "$size" /dev/zero | curl -sS "${curl_side[@]}" -T - -H 'Content-Type: application/octet-stream' \
      -o "$WORK/item.json" -w '%{http_code} %{size_upload} %{speed_upload}\n' \
      "$base/v1.0/me/drive/root:/bench-$side.bin:/content" >"$out"
  fi
  [ -z "$sampler" ] || { kill "$sampler"; wait "$sampler" 2>/dev/null || true; }
  local want=200
  [ "$dir" = up ] && want=201
  read -r code bytes speed <"$out"
  # Uploads are chunked: curl's count includes the framing, so the size is the one the stand-in received.
  [ "$dir" = down ] || bytes=$(grep -o '"size":[0-9]*' "$WORK/item.json" | cut -d: -f2)
  if [ "$code" != "$want" ] || [ "$bytes" != "$size" ]; then
    echo "bench-proxy: $side $dir answered $code after $bytes of $size bytes" >&2
    return 1
  fi
  echo "$speed"
}

# proxy_bulk: sets PROXY_DOWN, DIRECT_DOWN, PROXY_UP, DIRECT_UP (MiB/s, medians), RSS_BASE, RSS_PEAK, RSS_HWM (KiB)
# and PROXY_BULK_DETAIL.
proxy_bulk() {
  local size=$((PROXY_BULK_MIB * 1024 * 1024)) att
  att=$(curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"user\":\"adele@contoso.com\",\"size\":$size}" \
    "$FAKE/_control/attachment")
  ATT_MESSAGE=$(echo "$att" | grep -o '"message_id":"[^"]*"' | cut -d'"' -f4)
  ATT_ID=$(echo "$att" | grep -o '"attachment_id":"[^"]*"' | cut -d'"' -f4)
  # Warm the proxy's pool and token for these scopes before the baseline.
  curl -fsS --unix-socket "$SOCK" -H "X-Graphbroker-Scopes: $BULK_SCOPES" -o /dev/null -r 0-0 \
    "http://localhost/graph/v1.0/me/messages/$ATT_MESSAGE/attachments/$ATT_ID/\$value" || true
  RSS_BASE=$(awk '/^VmRSS:/ {print $2}' "/proc/$DPID/status")
  local r dir side
  for dir in down up; do : >"$WORK/bulk-proxy-$dir"; : >"$WORK/bulk-direct-$dir"; done
  for r in $(seq "$PROXY_BULK_ROUNDS"); do
    local order="proxy direct"
    [ $((r % 2)) = 0 ] && order="direct proxy"
    for dir in down up; do
      for side in $order; do
        bulk_once "$side" "$dir" | awk '{printf "%.1f\n", $1 / 1048576}' >>"$WORK/bulk-$side-$dir"
        [ "${PIPESTATUS[0]}" = 0 ] || return 1
      done
    done
  done
  PROXY_DOWN=$(median "$WORK/bulk-proxy-down")
  DIRECT_DOWN=$(median "$WORK/bulk-direct-down")
  PROXY_UP=$(median "$WORK/bulk-proxy-up")
  DIRECT_UP=$(median "$WORK/bulk-direct-up")
  RSS_PEAK=$(cat "$WORK"/rss-*-proxy.* | sort -n | tail -n1)
  RSS_HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")
  PROXY_BULK_DETAIL="download MiB/s, proxy: $(paste -sd' ' "$WORK/bulk-proxy-down"); direct: $(paste -sd' ' "$WORK/bulk-direct-down")
upload MiB/s, proxy: $(paste -sd' ' "$WORK/bulk-proxy-up"); direct: $(paste -sd' ' "$WORK/bulk-direct-up")
daemon VmRSS: $((RSS_BASE / 1024)) MiB before, peak $((RSS_PEAK / 1024)) MiB while streaming ($(cat "$WORK"/rss-*-proxy.* | wc -l) samples); VmHWM $((RSS_HWM / 1024)) MiB"
}

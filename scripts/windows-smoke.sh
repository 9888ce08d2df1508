#!/usr/bin/env bash
# A real Windows run: builds chinaport-proxy.exe, runs it under wine (installed from Debian's
# packages when missing) against a stand-in UKey on 127.0.0.1 (the native build's simulator), and
# checks /health, a signed /rpc call, one message sent to and one receipt read from transfer
# folders whose Windows paths hold Chinese characters and spaces, its audit webhook delivered over HTTPS through SChannel to a
# receiver whose certificate a test CA in webhook.ca_file vouches for, the log file written next
# to the exe, and a clean exit 0 when told to stop (Ctrl+C, which wine delivers to the console
# program as a CTRL_C_EVENT).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { printf '== windows-smoke: %s\n' "$*"; }
fail() { printf 'windows-smoke FAILED: %s\n' "$*" >&2; exit 1; }

./build.sh host windows

if ! command -v wine >/dev/null; then
  say "installing wine"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wine64 >/dev/null
fi

work=$(mktemp -d)
app="$work/app"                       # the folder the exe is copied into, as on the customs PC
mkdir -p "$app"
sim_pid=""
tls_pid=""
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "$tls_pid" ] && kill "$tls_pid" 2>/dev/null || true
  WINEPREFIX="$work/prefix" wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cp target/x86_64-pc-windows-gnu/release/chinaport-proxy.exe "$app/"
# test-only: Debian's wine 8 lacks bcryptprimitives.dll (see scripts/windows/prng-shim.c)
x86_64-w64-mingw32-gcc -shared -O2 -o "$app/bcryptprimitives.dll" scripts/windows/prng-shim.c -ladvapi32
# a stand-in for the vendor's SetAccessControl.exe, on the Windows PATH only (WINEPATH below)
mkdir -p "$work/vendor"
x86_64-w64-mingw32-gcc -O2 -o "$work/vendor/SetAccessControl.exe" scripts/windows/setaccesscontrol-stub.c

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
ukey_port=$(free_port)
secret="smoke-secret-$RANDOM"

say "HTTPS receiver with a certificate from a test CA (OpenSSL, Python's ssl)"
( cd "$work"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=smoke test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req "${ec[@]}" -keyout srv.key -out srv.csr -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > srv.ext
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
    -extfile srv.ext 2>/dev/null ) || fail "openssl could not make the test certificates"
cp "$work/ca.pem" "$app/company-ca.pem"
python3 tests/tls_receiver.py "$work/srv.pem" "$work/srv.key" "$work/received.jsonl" > "$work/tls.port" &
tls_pid=$!
for _ in $(seq 50); do [ -s "$work/tls.port" ] && break; sleep 0.1; done
tls_port=$(head -n 1 "$work/tls.port")
[ -n "$tls_port" ] || fail "the HTTPS receiver did not start"

# the transfer client's folders, as Windows paths with Chinese characters and spaces
xfer="$work/海关 传输/ImpPath"
mkdir -p "$xfer/OutBox" "$xfer/InBox"
win_json() { local p="Z:$1"; printf '%s' "${p//\//\\\\}"; }   # Z:\\work\\…, escaped for JSON

cat > "$app/config.json" <<JSON
{
  "transfer": {"outbox": "$(win_json "$xfer/OutBox")", "inbox": "$(win_json "$xfer/InBox")",
               "processed": "$(win_json "$xfer/已处理 回执")", "poll_ms": 200},
  "server": {"host": "127.0.0.1", "port": "$port"},
  "ukey": {"url": "ws://127.0.0.1:$ukey_port", "password": "88888888"},
  "auth": {"app_secret": "$secret"},
  "webhook": {"audit_url": "https://127.0.0.1:$tls_port/audit", "ca_file": "company-ca.pem"},
  "log": {"file": "proxy.log"}
}
JSON

say "stand-in UKey on 127.0.0.1:$ukey_port"
target/release/chinaport-proxy simulate --listen "127.0.0.1:$ukey_port" -config "$app/config.json" \
  > "$work/simulator.log" 2>&1 &
sim_pid=$!

say "starting the exe under wine (no -config: it must find config.json next to itself)"
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEPATH="Z:${work//\//\\}\\vendor"
(cd / && exec wine "$app/chinaport-proxy.exe") > "$work/wine.out" 2>&1 &
wine_pid=$!

deadline=$(( $(date +%s) + 120 ))      # the first start creates the wine prefix
until curl -s -m 2 "http://127.0.0.1:$port/health" | grep -q '"status":"ok"'; do
  if ! kill -0 "$wine_pid" 2>/dev/null; then
    cat "$work/wine.out" "$app/proxy.log" 2>/dev/null || true
    fail "the exe exited before it was healthy"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "no healthy /health within 120 s"
  sleep 0.5
done
say "/health is 200"

body='{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"windows smoke 报关"}}'
ts=$(date +%s%3N)
sig=$(printf '%s' "POST/rpc${ts}${body}${secret}" | md5sum | cut -d' ' -f1)
answer=$(curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' \
  -H "X-Timestamp: $ts" -H "X-Signature: $sig" --data-binary "$body" "http://127.0.0.1:$port/rpc")
code=$(printf '%s' "$answer" | tail -n 1)
[ "$code" = 200 ] || fail "signed /rpc answered $code: $answer"
printf '%s' "$answer" | grep -q '"Result":true' || fail "signed /rpc did not sign: $answer"
unsigned=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "$body" "http://127.0.0.1:$port/rpc")
[ "$unsigned" = 401 ] || fail "an unsigned /rpc answered $unsigned, not 401"
say "signed /rpc is 200, unsigned is 401"

# send one message into the outbox, read one receipt from the inbox (GB2312-declared: decoded by
# Windows' own code page 54936 under wine)
body=$(python3 -c 'import json,sys; print(json.dumps({"xml": open(sys.argv[1], encoding="utf-8").read()}))' \
  tests/ceb_corpus/ceb311.xml)
ts=$(date +%s%3N)
sig=$(printf '%s' "POST/api/ceb/send${ts}${body}${secret}" | md5sum | cut -d' ' -f1)
answer=$(curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' \
  -H "X-Timestamp: $ts" -H "X-Signature: $sig" --data-binary "$body" "http://127.0.0.1:$port/api/ceb/send")
code=$(printf '%s' "$answer" | tail -n 1)
[ "$code" = 200 ] || fail "POST /api/ceb/send answered $code: $answer"
sent="$xfer/OutBox/CEB311Message_4CDE1CFD-EDED-46B1-946C-B8022E42FC94.xml"
[ -s "$sent" ] || fail "no $sent after /api/ceb/send: $(ls -A "$xfer/OutBox")"
[ "$(ls -A "$xfer/OutBox" | wc -l)" = 1 ] || fail "more than the one file in the outbox: $(ls -A "$xfer/OutBox")"
grep -q "<ds:SignatureValue>" "$sent" || fail "the file in the outbox is not signed"
say "POST /api/ceb/send wrote one signed file into $xfer/OutBox"

cp tests/receipts/ceb312-gb2312.xml "$xfer/InBox/回执 1.xml"
deadline=$(( $(date +%s) + 20 ))
until [ -s "$xfer/已处理 回执/回执 1.xml" ] && [ -z "$(ls -A "$xfer/InBox")" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the receipt was not read and moved within 20 s: $(grep -i transfer "$app/proxy.log" | tail -n 3)"
  sleep 0.3
done
ts=$(date +%s%3N)
sig=$(printf '%s' "GET/api/receipts${ts}${secret}" | md5sum | cut -d' ' -f1)
receipts=$(curl -s -H "X-Timestamp: $ts" -H "X-Signature: $sig" "http://127.0.0.1:$port/api/receipts?orderNo=GB-ORDER-1")
printf '%s' "$receipts" | grep -q '"returnStatus":"120"' || fail "GET /api/receipts lacks the 120 receipt: $receipts"
printf '%s' "$receipts" | grep -q '逻辑校验通过' || fail "the GB2312 receipt was not decoded: $receipts"
say "the receipt was read from $xfer/InBox, decoded from GB2312 and moved to 已处理 回执"

# Wine's SChannel checks revocation even with CERT_CHAIN_POLICY_IGNORE_ALL_REV_UNKNOWN_FLAGS,
# which Windows honours for a certificate without a CRL distribution point (as the test CA's
# are): under wine the handshake then ends in CERT_E_REVOCATION_FAILURE (0x800B010E). Either
# outcome proves SChannel is the TLS provider and got as far as checking the chain, with no
# panic; that the CA in webhook.ca_file is trusted is proven by tests/tls.rs (rustls), and
# SChannel's full delivery needs a real Windows.
deadline=$(( $(date +%s) + 30 ))
tls_result=""
until [ -n "$tls_result" ]; do
  if grep -q api_audit "$work/received.jsonl" 2>/dev/null; then
    tls_result=delivered
  elif grep -q -- "-2146762482" "$app/proxy.log"; then
    tls_result=revocation
  elif [ "$(date +%s)" -ge "$deadline" ]; then
    grep -i "webhook" "$app/proxy.log" | tail -n 5 >&2 || true
    fail "the audit webhook over HTTPS (SChannel, webhook.ca_file) neither arrived nor failed on revocation within 30 s"
  fi
  sleep 0.3
done
if grep -q "panic" "$app/proxy.log"; then fail "a panic in the log: $(grep panic "$app/proxy.log" | head -n 1)"; fi
case "$tls_result" in
  delivered) say "audit webhook delivered over HTTPS by SChannel, trusting the CA in webhook.ca_file" ;;
  revocation) say "HTTPS webhook went through SChannel up to the chain check (wine cannot check revocation; see above)" ;;
esac

ts=$(date +%s%3N)
sig=$(printf '%s' "POST/api/ukey/restart${ts}${secret}" | md5sum | cut -d' ' -f1)
restart=$(curl -s -X POST -H "X-Timestamp: $ts" -H "X-Signature: $sig" "http://127.0.0.1:$port/api/ukey/restart")
printf '%s' "$restart" | grep -q 'stub SetAccessControl -restart -i' \
  || fail "POST /api/ukey/restart did not find and run SetAccessControl.exe on PATH: $restart"
say "SetAccessControl.exe found on the Windows PATH and run with -restart -i"

[ -s "$app/proxy.log" ] || fail "no log file next to the exe"
grep -q "listening on http://127.0.0.1:$port" "$app/proxy.log" || fail "log lacks the listening line"
grep -q "POST /rpc cus-sec_SpcSignDataAsPEM -> 200" "$app/proxy.log" || fail "log lacks the request"
if grep -q "88888888\|$secret" "$app/proxy.log"; then fail "a secret reached the log"; fi
say "log file written next to the exe, secrets masked"

exe_pid=$(pgrep -f "$app/chinaport-proxy.exe" | grep -vx "$wine_pid" | head -n 1 || true)
[ -n "$exe_pid" ] || exe_pid=$wine_pid
say "stopping (Ctrl+C)"
kill -INT "$exe_pid"
status=0
deadline=$(( $(date +%s) + 20 ))
while kill -0 "$wine_pid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the exe did not exit within 20 s of Ctrl+C"
  sleep 0.2
done
wait "$wine_pid" || status=$?
[ "$status" = 0 ] || fail "the exe exited with $status"
grep -q "stop requested" "$app/proxy.log" || fail "log lacks the stop"
grep -q "INFO  stopped" "$app/proxy.log" || fail "log lacks the clean end"
say "exited 0 after a graceful stop"

say "passed in $(( $(date +%s) - started )) s"

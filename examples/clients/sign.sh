#!/usr/bin/env bash
# curl + shell: sign a call with the MD5 scheme and send it to chinaport-proxy.
PROXY_URL=${PROXY_URL:-http://127.0.0.1:8780}
APP_SECRET=${APP_SECRET:-your-secret-key}
BODY='{"_method":"cus-sec_SpcGetCertNo"}'
TS=$(date +%s%3N)                                   # milliseconds
SIG=$(printf '%s' "POST/rpc${TS}${BODY}${APP_SECRET}" | md5sum | cut -d' ' -f1)
curl -s -H 'Content-Type: application/json' -H "X-Timestamp: $TS" -H "X-Signature: $SIG" \
  -d "$BODY" "$PROXY_URL/rpc"

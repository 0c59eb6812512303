#!/usr/bin/env bash
# Post a signed event to a local `make run` stack (or any stage: set URL and KEY).
# Usage: scripts/post-event.sh TYPE [EVENT_ID] [ORDER_ID]
set -euo pipefail
TYPE=${1:?usage: post-event.sh order.placed|order.delivered|order.returned [id] [order]}
ID=${2:-evt-$(date +%s%N)}
ORDER=${3:-o-1001}
URL=${URL:-http://127.0.0.1:8000/events}
KEY=${KEY:-local-events-hmac-key}
# `make run` runs business time faster than the wall clock and writes it to out/now.txt.
NOW=$(cat "${NOW_FILE:-out/now.txt}" 2>/dev/null || date -u +%FT%TZ)
BODY=$(cat <<JSON
{"id":"$ID","type":"$TYPE","occurred_at":"$NOW",
 "customer":{"id":"c-1","name":"Ana Souza","phone":"+14155550123","email":"ana@example.com",
             "timezone":"America/New_York","locale":"en-US","consent":{"sms":true,"email":true}},
 "order":{"id":"$ORDER","total":129.5,"currency":"USD",
          "items":[{"sku":"KX-200","name":"Kettle","category":"appliance","quantity":1,"price":129.5}]}}
JSON
)
TS=$(date +%s)
SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$KEY" | sed 's/^.*= //')
curl -sS -X POST "$URL" -H 'Content-Type: application/json' \
     -H "X-Aftercare-Signature: t=$TS,v1=$SIG" --data-binary "$BODY"
echo

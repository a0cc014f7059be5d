#!/bin/sh
# Imports the Flowline saved objects into Kibana through its saved-objects
# API. Fixed ids and overwrite=true: importing twice changes nothing.
set -eu
KIBANA_URL=${KIBANA_URL:-http://localhost:5601}
DIR=$(dirname "$0")
echo "importing $DIR/flowline.ndjson into $KIBANA_URL"
out=$(curl -fsS -X POST "$KIBANA_URL/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: flowline' -F "file=@$DIR/flowline.ndjson")
echo "$out"
echo "$out" | grep -q '"success":true' || { echo "import failed" >&2; exit 1; }
echo "dashboard: $KIBANA_URL/app/dashboards#/view/flowline-metrics-dashboard"

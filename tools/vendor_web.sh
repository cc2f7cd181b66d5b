#!/usr/bin/env bash
# Fetch the web application's front-end libraries from the npm registry at their pinned versions and put the files
# the pages use under publisher/interfaces/web/static/vendor/ (see the README there). Needs npm; run from anywhere.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/publisher/interfaces/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
get() {  # get <npm spec> <folder> <file in the package>...
  local spec="$1" folder="$2"
  shift 2
  mkdir -p "$work/$folder" "$dest/$folder"
  tar xzf "$(npm pack -q "$spec" | tail -n1)" -C "$work/$folder"
  for file in "$@"; do cp "$work/$folder/package/$file" "$dest/$folder/"; done
}
get htmx.org@2.0.11 htmx-2.0.11 dist/htmx.min.js LICENSE
get echarts@6.1.0 echarts-6.1.0 dist/echarts.min.js LICENSE NOTICE
get @event-calendar/build@5.10.1 event-calendar-5.10.1 dist/event-calendar.min.js dist/event-calendar.min.css
get swagger-ui-dist@5.35.0 swagger-ui-5.35.0 swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE
echo "vendored into $dest"

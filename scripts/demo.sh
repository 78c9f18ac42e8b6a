#!/usr/bin/env bash
# Prepares everything (see setup.sh), starts `hybox serve`, creates a sandbox, runs Python with
# numpy and a matplotlib plot in it, and shows the results and where the PNG went.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

hybox="${CARGO_TARGET_DIR:-target}/release/hybox"
data_dir=${HYBOX_DATA_DIR:-$HOME/.local/share/hybox}
listen=${HYBOX_LISTEN:-127.0.0.1:7700}
export HYBOX_SERVER="http://$listen"

printf '\n\033[1m==> starting hybox serve on %s (data: %s)\033[0m\n' "$listen" "$data_dir"
"$hybox" serve --listen "$listen" --data-dir "$data_dir" >/tmp/hybox-demo-serve.out 2>/tmp/hybox-demo-serve.log &
server=$!
trap 'kill $server 2>/dev/null && wait $server 2>/dev/null; true' EXIT
for _ in $(seq 1 200); do
  grep -q listening /tmp/hybox-demo-serve.out 2>/dev/null && break
  if ! kill -0 $server 2>/dev/null; then cat /tmp/hybox-demo-serve.log >&2; exit 1; fi
  sleep 0.05
done

printf '\n\033[1m==> hybox run demo examples/demo.py\033[0m\n'
"$hybox" run demo --lang python examples/demo.py --save-images out/demo

printf '\n\033[1m==> hybox exec demo -- python3 -c ...\033[0m\n'
"$hybox" exec demo -- python3 -c "'import os; print(sorted(os.listdir(\"/workspace\")))'"

printf '\n\033[1m==> hybox exec demo -- gcc ... (what wasm cannot run goes to the Ubuntu container)\033[0m\n'
if curl -s "$HYBOX_SERVER/v1/health" | grep -q '"available":true'; then
  "$hybox" exec demo -- 'echo "#include <stdio.h>" > hello.c && echo "int main(){return puts(\"hello from gcc in the container\")<0;}" >> hello.c && gcc -Wall hello.c -o hello && ./hello && grep PRETTY /etc/os-release'
  printf '\n\033[1m==> a background web server in the container, reached through its preview URL\033[0m\n'
  web="web-$(date +%s)"
  curl -s -X POST "$HYBOX_SERVER/v1/sandboxes/demo/processes" -d "{\"command\":\"python3 -m http.server 8000\",\"processId\":\"$web\"}"; echo
  curl -s -X POST "$HYBOX_SERVER/v1/sandboxes/demo/processes/$web/waitForPort" -d '{"port":8000,"timeout":30000}'; echo
  preview=$("$hybox" expose demo 8000 | tail -1)
  echo "  $preview"
  echo "  the workspace as the server in the container lists it:"
  curl -s "$preview" | grep -o 'href="[^"]*"' | sed 's/^/    /'
  curl -s -X DELETE "$HYBOX_SERVER/v1/sandboxes/demo/processes/$web" >/dev/null
else
  echo "  (the container route is unavailable here: $(curl -s "$HYBOX_SERVER/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["containers"].get("reason"))'))"
fi

printf '\n\033[1m==> where the PNG went\033[0m\n'
# The workspace is a copy-on-write view in hybox's FUSE mount (or a plain folder without FUSE).
workspace="$data_dir/mnt/demo"
[ -d "$workspace" ] || workspace="$data_dir/sandboxes/demo/workspace"
echo "  returned as a rich result, saved by the CLI: $(pwd)/out/demo/"
echo "  written by the guest to /workspace/plot.png: $workspace/plot.png"
ls -l out/demo/*.png "$workspace/plot.png"

printf '\n\033[1m==> hybox snapshot create demo; hybox snapshot export (a plain squashfs file)\033[0m\n'
snap=$("$hybox" snapshot create demo --name demo --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
"$hybox" snapshot export "$snap" out/demo/workspace.sqfs
if command -v unsquashfs >/dev/null; then unsquashfs -l out/demo/workspace.sqfs; fi

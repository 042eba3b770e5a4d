#!/usr/bin/env bash
# run.sh: build vsh and start its shell (README's first command).
# Arguments are passed to vsh: ./run.sh list --all, ./run.sh "define x.xml; start x".
# State lives in VSH_HOME if set, else vsh's default directories
# (/var/lib/vsh + /etc/vsh for root, XDG directories otherwise); no daemon.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p bin
# CGO_ENABLED=0: a static binary with no C at all (net would link libc).
CGO_ENABLED=0 go build -o bin/vsh ./cmd/vsh
exec bin/vsh "$@"

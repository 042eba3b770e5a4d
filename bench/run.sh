#!/bin/sh
# Runs vsh's benchmark suite against its peers and prints a Markdown table.
# Usage: bench/run.sh [--runs N] [--linux] [--only NAME[,NAME]] [--out FILE] [--go]
# See `go run ./bench -h` for the flags and bench/main.go for the figures.
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench "$@"

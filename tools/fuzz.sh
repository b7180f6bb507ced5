#!/usr/bin/env bash
# Long-running fuzz of the channel surgery: tools/fuzz.sh [COUNT] [START]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python tools/fuzz.py --count "${1:-10000}" --start "${2:-0}"

#!/usr/bin/env bash
# Full benchmark run: saves the JSON report next to this script and prints the table.
set -euo pipefail
cd "$(dirname "$0")"
out="results-$(hostname -s).json"
aero bench --json "$@" > "$out"
python3 - "$out" <<'PY'
import json, sys
from aero.bench.mips import print_table
print_table(json.load(open(sys.argv[1])))
PY
echo "saved benchmarks/$out"

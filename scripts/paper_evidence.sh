#!/usr/bin/env bash
# Regenerates every paper table in full, from nothing (--fresh), on the current checkout,
# into docs/evidence/tables/ (NAME.md, .csv, .tex, .html and any Pareto figure). Each
# table's markdown ends with its command, seconds, host, start and end, the machine's
# load while it ran and the dq commit. A table that fails does not stop the others;
# the script exits 1 if any did.
#
#   make evidence                       # all tables, one row per CPU core at once (dq-table's default)
#   scripts/paper_evidence.sh adv_digits explain_sanity   # some of them
#   ARGS=launcher=joblib make evidence  # one row at a time, its seeds in two workers (as before)
#
# Takes about an hour on an idle two-core machine (fair_adult alone about 20 minutes).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-docs/evidence/tables}
read -r -a extra <<< "${ARGS:-}"  # more dq-table arguments for every table
if [ "$#" -gt 0 ]; then names=("$@"); else
  names=()
  for file in conf/paper/*.yaml; do names+=("$(basename "$file" .yaml)"); done
fi
mkdir -p "$OUT"
failed=()
for name in "${names[@]}"; do
  echo "== $name ($(date -u +%FT%TZ))"
  "$BIN/dq-table" "$name" --fresh --out "$OUT" "${extra[@]}" || failed+=("$name")
done
if [ "${#failed[@]}" -gt 0 ]; then echo "tables that failed: ${failed[*]}"; exit 1; fi
echo "all ${#names[@]} tables written to $OUT"

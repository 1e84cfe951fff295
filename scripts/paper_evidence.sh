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
# A table that needs local files dq cannot ship (a `requires:` section: a dataset root,
# pretrained weights) runs only when ARGS_<name> gives the overrides naming them, e.g.
#   ARGS_group_dro_waterbirds='dataset.root=/data model.weights=/w/resnet50-0676ba61.pth' make evidence
# otherwise it is skipped with one line saying so.
#
# On two cores the nine CPU-scale tables took 31 minutes (39 with ARGS=launcher=joblib) and
# lora_minilm 55 more with launcher=joblib (docs/evidence/paper-tables.md).
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
skipped=()
for name in "${names[@]}"; do
  args_var="ARGS_$name"
  read -r -a args <<<"${!args_var:-}"
  if grep -q '^requires:' "conf/paper/$name.yaml" && [ "${#args[@]}" -eq 0 ]; then
    echo "== $name: skipped: it needs local files; to run it, set $args_var to the overrides naming them (the keys under requires: in conf/paper/$name.yaml)"
    skipped+=("$name")
    continue
  fi
  echo "== $name ($(date -u +%FT%TZ))"
  "$BIN/dq-table" "$name" --fresh --out "$OUT" "${extra[@]}" "${args[@]}" || failed+=("$name")
done
if [ "${#failed[@]}" -gt 0 ]; then echo "tables that failed: ${failed[*]}"; exit 1; fi
written=$((${#names[@]} - ${#skipped[@]}))
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "$written of ${#names[@]} tables written to $OUT; skipped (local files not given): ${skipped[*]}"
else
  echo "all ${#names[@]} tables written to $OUT"
fi

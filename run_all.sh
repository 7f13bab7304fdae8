#!/usr/bin/env bash
# Rerun every paper table, then regenerate the figures from the results (docs/tables.md).
#   bash run_all.sh                            demo scale: bundled data, tiny CNN, CPU; minutes on 2 cores
#   bash run_all.sh --full [--data-root DIR]   paper scale for every dataset prepared under DIR (default:
#                                              $RETRIEVAL_DATA_ROOT); rows of other datasets are skipped and named
#   bash run_all.sh --force                    recompute every row, even those whose results are current
# Tables are experiments/*/*.yaml files with `rows:`; results go to results/demo/<paper>/ or results/<paper>/.
# A demo row is reused only from a finished run of the same resolved config and code (fingerprint of retrieval/)
# under runs/, so a fresh clone trains every row; at paper scale a results line of other code is marked stale.
# Then the fresh numbers are compared with the committed ones (git HEAD) row by row: results/demo/drift.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | cut -c3-; }
scale=(--demo)
data_root=()
force=()
while (($#)); do
  case "$1" in
    --full) scale=() ;;
    --force) force=(--force) ;;
    --data-root)
      (($# >= 2)) || { echo "run_all.sh: --data-root needs a folder" >&2; exit 2; }
      data_root=(--data-root "$2"); shift ;;
    --data-root=*) data_root=(--data-root "${1#*=}") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ((${#data_root[@]})) && ((${#scale[@]})); then
  echo "run_all.sh: --data-root is for --full (demo runs use the bundled data)" >&2; exit 2
fi

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# The demo is sized for 2 CPU cores: one pool of 2 threads, no extra BLAS pools on top of it.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-2}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"

status=0
started=$SECONDS
echo "== tables ($([[ ${#scale[@]} -gt 0 ]] && echo demo scale || echo paper scale))"
# one process for every table: torch and the datasets are imported once
"$PYTHON" -m retrieval table --all "${scale[@]}" "${data_root[@]}" "${force[@]}" || status=$?
tables_seconds=$((SECONDS - started))

echo "== drift from the committed results"
results=results/demo
((${#scale[@]})) || results=results
if compgen -G "$results/*/*.csv" >/dev/null; then
  "$PYTHON" -m retrieval.tables.drift --results "$results" || status=$?
else
  echo "no results under $results"
fi

echo "== notebooks"
shopt -s nullglob
notebooks=(notebooks/*.ipynb)
if ((${#notebooks[@]})); then
  "$PYTHON" -m retrieval.tables.notebooks "${notebooks[@]}" || status=$?
else
  echo "no notebooks/*.ipynb"
fi
total=$((SECONDS - started))

echo "== summary"
echo "tables: ${tables_seconds} s, notebooks: $((total - tables_seconds)) s, total: $((total / 60)) min $((total % 60)) s"
if ((status)); then
  echo "some tables or notebooks failed (see above); the others completed" >&2
fi
exit "$status"

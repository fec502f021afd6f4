#!/bin/bash
# benchmarks/variants.py on the device machine (Python 3.12, JAX, no TensorFlow): six
# processes share the GPU, each running its variants for the seeds given.
#   bash benchmarks/variants.sh base,f16,mixup02,cutmix1,ema,e150,aug_strong,drop05,ls02,b32,lr1e3,l2_2e4 0,1
#   bash benchmarks/variants.sh base_ns,mixup_ns,ls02_ns,l2_ns,combo_ns,ema_ns 0,1
# Needs .gpu/covers.pkl (`python -m benchmarks.variants pack RUN_DIR .gpu/covers.pkl`) and
# .whl/ with keras 3.12.4, keras-tuner 1.4.8, kt-legacy, namex, optree for cp312 (both
# ignored by .git/info/exclude, carried). Results: $OUT/results.json.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false \
  PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python KERAS_BACKEND=${KERAS_BACKEND:-jax}
IFS=, read -r -a V <<< "$1"
mkdir -p /tmp/variants
for i in 0 1 2 3 4 5; do
  names=$(printf '%s\n' "${V[@]}" | awk -v i=$i 'NR % 6 == i + 1' | paste -sd,)
  [ -n "$names" ] || continue
  ( timeout "${BUDGET:-430}" python3 -m benchmarks.variants run "$names" "$2" .gpu/covers.pkl \
      /tmp/variants > "$OUT/log_$i.txt" 2>&1 ) &
done
wait
python3 - "$OUT/results.json" <<'PY'
import glob, json, sys
rows = [json.load(open(p)) for p in sorted(glob.glob("/tmp/variants/*.json"))]
json.dump(rows, open(sys.argv[1], "w"))
for r in sorted(rows, key=lambda r: (r["name"], r["seed"])):
    print(r["name"], r["seed"], round(r["best_val"], 4), r["best_epoch"], r["epochs_run"],
          r.get("ema_best_val"), r["seconds"])
PY

#!/usr/bin/env bash
# GPU step speed, one lever at a time, and trainings side by side (a benchmark, not a test).
#
#   benchmarks/gpu_speed.sh PREPARED OUTDIR [SIZE]
#
# Writes one JSON per measurement into OUTDIR (train_speed.py's figures) and prints a line
# each. 4 + 4 images at SIZE (default 320), bf16 autocast, channels-last, as the paper
# configs train on a GPU. Each measurement has its own time limit, so one that hangs or fails
# (a compile error, say) costs its limit and the others still run.
set -uo pipefail
prepared="$1"; out="$2"; size="${3:-320}"
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
mkdir -p "$out"
bench() {  # name, time limit (s), train_speed.py arguments...
  local name="$1" limit="$2"; shift 2
  timeout "$limit" "$python" "$here/train_speed.py" --data "$prepared" --size "$size" --batch 4 \
    --precision bf16 --channels-last --skip-loader --json "$out/$name.json" "$@" \
    > "$out/$name.log" 2>&1 && grep -E "step|compilation" "$out/$name.log" | sed "s/^/$name: /" \
    || echo "$name: failed or over ${limit}s (tail of $out/$name.log: $(tail -1 "$out/$name.log"))"
}
eager=(--repeats 5 --inner 20 --warmup 5)
bench supervised-fused 60 "${eager[@]}" --optimizer fused
bench supervised-eager 60 "${eager[@]}"
bench clcc1-eager 60 "${eager[@]}" --method clcc --params "{n: 5}" --progress 0.1
bench clcc2-eager 60 "${eager[@]}" --method clcc --params "{n: 5}" --progress 0.9
graphs=(--repeats 5 --inner 20 --warmup 5 --compile reduce-overhead)
bench supervised-graphs 150 "${graphs[@]}"
bench clcc1-graphs 150 "${graphs[@]}" --method clcc --params "{n: 5}" --progress 0.1
bench clcc2-graphs 100 "${graphs[@]}" --method clcc --params "{n: 5}" --progress 0.9
for n in 2 4 8; do  # N eager supervised trainings side by side: aggregate steps/s
  for i in $(seq "$n"); do
    bench "parallel$n-$i" 90 --repeats 3 --inner 50 --warmup 5 --threads 2 >/dev/null &
  done
  wait
  "$python" - "$out" "$n" <<'PY'
import json, sys, pathlib
out, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rates = [json.loads(p.read_text())["steps_per_s"] for p in out.glob(f"parallel{n}-*.json")]
print(f"parallel{n}: {len(rates)}/{n} finished, {sum(rates):.1f} steps/s together "
      f"({', '.join(f'{r:.1f}' for r in rates)} each)")
PY
done

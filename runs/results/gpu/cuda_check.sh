#!/bin/bash
# One prepared device check (about 6 minutes): seed 1's faithful BNNs (bnn_curves, 600
# epochs, compiled) and the attack budget at 4000 steps, side by side on the GPU.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
LOG=$OUT/log.txt
T0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*" | tee -a $LOG; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch,pyro;print('torch',torch.__version__,'pyro',pyro.__version__,torch.cuda.get_device_name())"; } 2>&1 | tee -a $LOG
LIMIT=${LIMIT:-330}
mkdir -p /tmp/res/budget /tmp/art/full
el "start: seed 1 bnn_curves and attack_budget, limit ${LIMIT}s each"
( timeout $LIMIT python3 runs/bnn_curves.py --seed 1 --device cuda --root /tmp/art --results /tmp/res --export /tmp/art/full --no-progress > /tmp/res/log_seed1.txt 2>&1; el "seed1 rc=$?" ) &
P1=$!
( timeout $LIMIT python3 runs/attack_budget.py --archs FC-10 FC-200-200-10 FC-1200-1200-10 --n 2000 --device cuda --root .gpu/full --bnn-root .gpu/bnn --results /tmp/res/budget > /tmp/res/log_budget.txt 2>&1; el "budget rc=$?" ) &
P2=$!
while kill -0 $P1 2>/dev/null; do sleep 30; el "seed1 rows: $(wc -l < /tmp/res/curves_seed1.csv 2>/dev/null)"; done
wait $P2
el "both done"
tail -3 /tmp/res/log_seed1.txt /tmp/res/log_budget.txt >> $LOG
(cd /tmp/art && tar czf $OUT/seed1_best.tgz seed1_*_best 2>/dev/null; tar czf $OUT/seed1_last.tgz seed1_*_last 2>/dev/null; tar czf $OUT/seed1_ckpt.tgz $(ls seed1_rho*.ckpt 2>/dev/null | grep -v patience) 2>/dev/null; tar czf $OUT/seed1_full.tgz full 2>/dev/null)
if [ $(( $(date +%s) - T0 )) -lt 330 ]; then
  timeout 40 python3 benchmarks/svi_speed.py --device cuda --repeats 3 --steps 100 --no-compile > /tmp/res/svi_speed_cuda.txt 2>&1; el "svi_speed rc=$?"
fi
(cd /tmp/res && tar czf $OUT/results.tgz .)
ls -la $OUT >> $LOG
el end

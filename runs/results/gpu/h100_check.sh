#!/bin/bash
# Device check (about 6 minutes): svi_speed on the GPU alone, then the attack budget
# (100/400/1000/4000 steps per target) at n = 2000 on all 12 seed-0 source nets: FC-10
# and FC-200 in one job, FC-1200 in another beside it.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
LOG=$OUT/log.txt
T0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*" | tee -a $LOG; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch,pyro;print('torch',torch.__version__,'pyro',pyro.__version__,torch.cuda.get_device_name())"; } 2>&1 | tee -a $LOG
mkdir -p /tmp/res/a /tmp/res/b
el "svi_speed (alone on the GPU)"
timeout 120 python3 benchmarks/svi_speed.py --device cuda --repeats 5 --steps 200 > $OUT/svi_speed_cuda.txt 2>&1; el "svi_speed rc=$?"
el "attack_budget: FC-10 + FC-200 and FC-1200 side by side"
( timeout ${LIMIT:-300} python3 runs/attack_budget.py --archs FC-10 FC-200-200-10 --n 2000 --device cuda --root .gpu/full --bnn-root .gpu/bnn --results /tmp/res/a > /tmp/res/a/log.txt 2>&1; el "budget FC-10/200 rc=$?"; cp /tmp/res/a/log.txt $OUT/budget_small_log.txt; (cd /tmp/res && tar czf $OUT/budget_small.tgz a) ) &
( timeout ${LIMIT:-300} python3 runs/attack_budget.py --archs FC-1200-1200-10 --lams 0 0.01 1 --n 2000 --device cuda --root .gpu/full --bnn-root .gpu/bnn --results /tmp/res/b > /tmp/res/b/log.txt 2>&1; el "budget FC-1200 rc=$?"; cp /tmp/res/b/log.txt $OUT/budget_1200_log.txt; (cd /tmp/res && tar czf $OUT/budget_1200.tgz b) ) &
wait
el end

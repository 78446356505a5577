#!/bin/bash
# Device check: the quick profile and the white-box curves' quick mode on the GPU (every
# stage of issue 11 on CUDA), after the init_guide device fix.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
T0=$(date +%s)
timeout 80 python3 runs/reproduce.py --profile quick --device cuda --workers 4 --root /tmp/q --results /tmp/q/res --report /tmp/q/R.md --no-progress 2>&1 | grep -v "^saved\|^reused\|^\[.*\] .* \.\.\.$" > $OUT/quick.txt; echo "reproduce quick rc=${PIPESTATUS[0]} in $(( $(date +%s) - T0 )) s" | tee -a $OUT/quick.txt
T1=$(date +%s)
timeout 60 python3 runs/epsilon_curves.py --quick --device cuda --no-progress > $OUT/eps.txt 2>&1; echo "epsilon_curves quick rc=$? in $(( $(date +%s) - T1 )) s" | tee -a $OUT/eps.txt
tail -5 $OUT/quick.txt $OUT/eps.txt

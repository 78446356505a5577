#!/bin/bash
# Device check: one seed of the full profile on the GPU, from scratch except the seven
# faithful BNNs (600 epochs, carried from runs/artifacts/full/bnn): 26 plain nets, the
# paper attack at 4000 steps, the rigorous sets and every table.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/log.txt
mkdir -p /tmp/res
timeout ${LIMIT:-480} python3 runs/reproduce.py --profile full --seeds 0 --device cuda --workers 8 --root .gpu2 --results /tmp/res --report /tmp/res/REPORT.md --no-progress 2>&1 | grep -v "^saved\|^reused" | tee -a $OUT/log.txt
echo "rc=${PIPESTATUS[0]}" | tee -a $OUT/log.txt
cp /tmp/res/REPORT.md $OUT/ 2>/dev/null
(cd /tmp/res && tar czf $OUT/results.tgz .)

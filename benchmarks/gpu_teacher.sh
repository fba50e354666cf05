#!/bin/bash
# Train experiments/gpu/pipnet_mbv2_256_300w.yaml on the device machine and bring the model
# back. Make packed/ first (bash benchmarks/gpu_pack.sh), then call the device tool with
#   command: bash benchmarks/gpu_teacher.sh     carry: ["packed"]     timeout_s: 560
# It writes to $OUT: gpu_mbv2_256_300w.pt (float16 model file), summary.json, metrics.csv and
# train.log. Here: facemark evaluate m=/work/.device/.../gpu_mbv2_256_300w.pt --data ...
# EPOCHS, ACCEL and LIMIT (batches per epoch) override the config, e.g. for a dry run on a
# CPU: EPOCHS=1 ACCEL=cpu LIMIT=2 OUT=/tmp/out bash benchmarks/gpu_teacher.sh
# TRAIN_SECONDS (default 420) bounds the training; the model of its best epoch is exported.
set -eo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the folder for the results}
CFG=experiments/gpu/pipnet_mbv2_256_300w.yaml
ARGS=()
[ -n "$EPOCHS" ] && ARGS+=("optim.epochs=$EPOCHS")
[ -n "$ACCEL" ] && ARGS+=("trainer.accelerator=$ACCEL")
[ -n "$LIMIT" ] && ARGS+=("trainer.limit_train_batches=$LIMIT" "trainer.limit_val_batches=$LIMIT")
[ "$ACCEL" = cpu ] && ARGS+=("trainer.precision=32-true" "data.num_workers=0")
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
# training stops after TRAIN_SECONDS (default 420) so that the export below still runs inside
# the device tool's 10-minute call; a later call resumes from last.ckpt with the same command
status=0
timeout "${TRAIN_SECONDS:-420}" python -m facemark train $CFG "${ARGS[@]}" 2>&1 \
    | tr "\r" "\n" | grep -v -E "it/s|\[A$" | tee "$OUT/train.log" || status=$?
[ "$status" = 0 ] || echo "training stopped (exit $status): exporting the best epoch so far"
RUN=runs-gpu/gpu_mbv2_256_300w
python -m facemark export $RUN/checkpoints/best.ckpt -o "$OUT/gpu_mbv2_256_300w.pt" --half
cp $RUN/summary.json "$OUT/" 2>/dev/null || true
find $RUN/logs -name metrics.csv -exec cp {} "$OUT/metrics.csv" \; -quit

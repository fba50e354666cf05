#!/usr/bin/env bash
# Builds the shipped default model (facemark/weights/default.pt and default.onnx) from the
# training runs of experiments/default/pipnet_mbv2_128.yaml (stage 1, from scratch) and
# experiments/default/pipnet_mbv2_128_context.yaml (stage 2, fine-tuned on detector-like crop
# boxes with image context), and measures it for the model card (docs/model-card.md). Run
# from the repository root, after
#   facemark train experiments/default/pipnet_mbv2_128.yaml
#   facemark train experiments/default/pipnet_mbv2_128_context.yaml \
#       experiment=default_pipnet_mbv2_128_context24 optim.epochs=24
# Needs ../shared/data. Writes the reports under ${OUT:-/tmp/default-model}.
set -euo pipefail
RUN=${RUN:-../fm-runs/default_pipnet_mbv2_128_context24}
OUT=${OUT:-/tmp/default-model}
DATA=../shared/data
TRAIN="pts:$DATA/300w/helen,pts:$DATA/300w/afw,csv:$DATA/ytf68/training_frames_keypoints.csv"
TEST="csv:$DATA/ytf68/test_frames_keypoints.csv"
mkdir -p "$OUT"

# 1. box-to-crop calibration of each offline detector, fitted on 1000 training faces
facemark calibrate "$RUN/checkpoints/best.ckpt" --data "$TRAIN" --limit 1000 \
    --detector dlib_hog opencv_haar --test "$TEST" -o "$OUT/calibrated.pt" \
    --report "$OUT/calibration.md"
# 2. the package's files: float16 .pt (PyTorch, GPUs) and float32 .onnx (the CPU default)
facemark export "$OUT/calibrated.pt" --format pt --half -o facemark/weights/default.pt
facemark export "$OUT/calibrated.pt" -o facemark/weights/default.onnx
# 3. accuracy on the held-out ytf68/test: ground-truth crops, detector crops, dlib
facemark evaluate default=facemark/weights/default.pt --data "$TEST" --out "$OUT/eval-gt"
facemark evaluate default=facemark/weights/default.pt dlib --data "$TEST" \
    --detector dlib_hog --out "$OUT/eval-dlib-boxes"
facemark evaluate default-refine=facemark/weights/default.pt --data "$TEST" \
    --detector dlib_hog --refine --out "$OUT/eval-dlib-boxes-refine"
facemark evaluate default-refine2=facemark/weights/default.pt --data "$TEST" \
    --detector dlib_hog --refine --refine-passes 2 --out "$OUT/eval-dlib-boxes-refine2"

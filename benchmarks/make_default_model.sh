#!/usr/bin/env bash
# Builds the shipped default model (facemark/weights/default.pt, float16) from its training
# runs (issue #9: ImageNet MobileNetV2 imported from ../shared/weights, every 300-W training
# face + the YouTube-Faces training frames, one stage with detector-like boxes and image
# context, then 20 epochs with lighter augmentation, no flip and a weight average)
# and measures it for the model card
# (docs/model-card.md). Run from the repository root, after
#   facemark weights import-tflite ../shared/weights/tf2_mobilenet_v2_1.0_224_ptq.tflite \
#       -o ../fm-weights/mobilenet_v2_imagenet.pth --calibration ../shared/data/photos
#   facemark train experiments/default/pipnet_mbv2_128_300w_imagenet.yaml
#   facemark train experiments/default/finetune/pipnet_mbv2_128_lightaug_ema_noflip_20ep.yaml
#   facemark train experiments/default/finetune/pipnet_mbv2_128_smaller96_normeval.yaml
#       (ten more epochs, half of the batches at 96 px, so its first pass runs at 96 px)
#   facemark train experiments/default/finetune/pipnet_mbv2_128_300w_x4.yaml
#       (ten more epochs from that model, the 300-W faces four times per epoch; its
#       init_weights, facemark/weights/default.pt, was that model until commit 4f860c7:
#       git show 4f860c7:facemark/weights/default.pt)
# Needs ../shared/data (and face_recognition_models for dlib's rows). Writes the reports
# under ${OUT:-/tmp/default-model}. The ONNX file is not committed: facemark.load() makes it
# from default.pt into the user cache on first use.
#
# The same script builds the larger model shipped beside it (facemark.load("accurate")):
#   NAME=accurate RUN=../fm-runs/finetune_mbv2_160_lightaug_ema_noflip bash benchmarks/make_default_model.sh
set -euo pipefail
NAME=${NAME:-default}
RUN=${RUN:-../fm-runs/finetune_mbv2_128_300w_x4}
CKPT=${CKPT:-$RUN/checkpoints/best.ckpt}
# the first of the two passes on smaller crops where that costs no accuracy (it only places
# the second crop; benchmarks/first_pass_size.py on validation faces, docs/results.md): the
# accurate model's at 128 px; the default's at 96 px (trained for it: data.smaller_sizes)
case $NAME in accurate) FIRST=${FIRST:-128} ;; *) FIRST=${FIRST:-96} ;; esac
OUT=${OUT:-/tmp/$NAME-model}
DATA=../shared/data
TRAIN="pts:$DATA/300w/afw,pts:$DATA/300w/helen/trainset,pts:$DATA/300w/lfpw/trainset,csv:$DATA/ytf68/training_frames_keypoints.csv"
mkdir -p "$OUT"

# 1. box-to-crop calibration of each offline detector, fitted on 1000 training faces
#    (a seeded random choice over all four training sets; no test face)
facemark calibrate "$CKPT" --data "$TRAIN" --limit 1000 \
    --detector dlib_hog opencv_haar -o "$OUT/calibrated.pt" --report "$OUT/calibration.md"
# 2. the package's file: float16 weights
facemark export "$OUT/calibrated.pt" --format pt --half --refine-passes 1 \
    --first-pass-size "$FIRST" -o "facemark/weights/$NAME.pt"
# 3. accuracy on the held-out test sets, as a user runs it: facemark detect with every
#    default, then evaluate against dlib's predictor on its own boxes in the same run
bash benchmarks/vs_dlib.sh "$NAME" "$OUT/vs-dlib"
# 4. ground-truth crops (the model alone)
facemark evaluate "$NAME=facemark/weights/$NAME.pt" \
    --data "pts:$DATA/300w/lfpw/testset" --out "$OUT/eval-gt-lfpw"
facemark evaluate "$NAME=facemark/weights/$NAME.pt" \
    --data "csv:$DATA/ytf68/test_frames_keypoints.csv" --out "$OUT/eval-gt-ytf68"

#!/usr/bin/env bash
# Accuracy of `facemark detect` with every default against dlib's 68-point predictor on its
# HOG boxes, as a user would compare them (issue #9): detect writes predictions.json for a
# test folder, then `facemark evaluate` matches each predicted face to its ground truth
# (outer-eye-corner NME on found faces; faces without a prediction count as failures) and
# runs dlib on the same images in the same run. Needs ../shared/data and dlib's predictor
# file (pip install face_recognition_models).
#   bash benchmarks/vs_dlib.sh [MODEL] [OUT]      MODEL: default (the bundled model) or a file
set -euo pipefail
MODEL=${1:-default}
OUT=${2:-/tmp/vs-dlib}
DATA=../shared/data
mkdir -p "$OUT"
for SET in lfpw-test ytf68-test; do
  case $SET in
    lfpw-test)  IMAGES=$DATA/300w/lfpw/testset; GT=pts:$DATA/300w/lfpw/testset ;;
    ytf68-test) IMAGES=$DATA/ytf68/test; GT=csv:$DATA/ytf68/test_frames_keypoints.csv ;;
  esac
  rm -rf "$OUT/$SET-detect"
  if [ "$MODEL" = default ]; then
    facemark detect "$IMAGES" -o "$OUT/$SET-detect" > "$OUT/$SET-detect.log"
  else
    facemark detect "$IMAGES" --model "$MODEL" -o "$OUT/$SET-detect" > "$OUT/$SET-detect.log"
  fi
  facemark evaluate "facemark=$OUT/$SET-detect/predictions.json" dlib --data "$GT" \
      --out "$OUT/$SET-eval" | sed -n '/^method/,/^$/p'
done

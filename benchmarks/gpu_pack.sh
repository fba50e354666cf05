#!/bin/bash
# Pack the training crops of experiments/gpu/pipnet_mbv2_256_300w.yaml into packed/ (ignored
# by git), for the device machine, which gets the repository and carried folders only:
#   bash benchmarks/gpu_pack.sh
# The validation faces are the 87 300-W faces of the default model's seeded split
# (benchmarks/validation_list.py; needs that run's crop caches), left out of the training packs.
set -eo pipefail
cd "$(dirname "$0")/.."
VAL=${VAL:-/tmp/fm-val}
python benchmarks/validation_list.py experiments/default/pipnet_mbv2_128_300w_imagenet.yaml \
    --out "$VAL" --sets 300w
D=../shared/data/300w
facemark data pack $D/afw $D/helen/trainset $D/lfpw/trainset \
    --names 300w_afw,helen_trainset,lfpw_trainset --exclude "$VAL/300w.txt" \
    -o packed --size 256 --context 1.25 --quality 85 --overwrite --no-progress
facemark data pack "$VAL/300w.txt" --names val_300w \
    -o packed --size 256 --context 1.25 --quality 85 --overwrite --no-progress
du -sh packed

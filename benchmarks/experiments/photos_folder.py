"""A folder of real photos for the README's "fine-tune your encoder on your photos": the train
images of a CIFAR-10 ``.npz`` written out as JPEGs at several depths with no class structure (and,
with ``--labelled``, its test images as a small labelled folder ``train/<class>/`` + ``val/<class>/``).

    python benchmarks/experiments/photos_folder.py --npz ../shared/data/cifar10-12k.npz --out /tmp/photos \
        --labelled /tmp/labelled
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", default="../shared/data/cifar10-12k.npz")
    ap.add_argument("--out", required=True, help="the unlabelled photos folder to write")
    ap.add_argument("--labelled", help="also a labelled folder of the test images (half train, half val)")
    args = ap.parse_args()
    with np.load(args.npz, allow_pickle=False) as z:
        x_train, x_test, y_test = z["x_train"], z["x_test"], z["y_test"]
        classes = [str(c) for c in z["classes"]] if "classes" in z.files else [str(c) for c in range(10)]
    out = Path(args.out)
    albums = ["", "2024", "2024/summer", "2025/trip/day1"]
    for i, img in enumerate(x_train):
        d = out / albums[i % len(albums)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"IMG_{i:05d}.{'JPG' if i % 3 else 'jpg'}", quality=90)
    print(f"{len(x_train)} photos in {out} at depths 0-3")
    if args.labelled:
        lab = Path(args.labelled)
        for i, (img, y) in enumerate(zip(x_test, y_test)):
            d = lab / ("train" if i % 2 else "val") / classes[int(y)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.png")
        print(f"{len(x_test)} labelled images in {lab} (train/<class>/, val/<class>/)")


if __name__ == "__main__":
    main()

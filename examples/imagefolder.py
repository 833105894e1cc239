#!/usr/bin/python3
# Train-loop skeleton over a mounted dataset: torchvision's ImageFolder on
# files/ (one class per top folder of the keys), a shuffling DataLoader with
# worker processes, and the time of each epoch.
#
#   avalafs -o dataset=acme/cars ~/avala
#   examples/imagefolder.py ~/avala/acme/cars/files --epochs 3 --workers 4
import argparse
import time

import torch
from torchvision import datasets, transforms


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="a files/ folder of a mounted dataset")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64,
                        help="images are resized to SIZE x SIZE")
    args = parser.parse_args()

    dataset = datasets.ImageFolder(args.root, transform=transforms.Compose([
        transforms.Resize((args.size, args.size)),
        transforms.ToTensor(),
    ]))
    print(f"{len(dataset)} images in {len(dataset.classes)} classes: "
          f"{', '.join(dataset.classes)}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size,
                                         shuffle=True,
                                         num_workers=args.workers)
    for epoch in range(args.epochs):
        start = time.monotonic()
        seen = 0
        counts = torch.zeros(len(dataset.classes), dtype=torch.long)
        for images, labels in loader:
            seen += images.shape[0]
            counts += torch.bincount(labels, minlength=len(dataset.classes))
        print(f"epoch {epoch + 1}: {seen} images in "
              f"{time.monotonic() - start:.2f} s, per class "
              f"{counts.tolist()}")


if __name__ == "__main__":
    main()

"""Training throughput on the CPU (ResNet-18, 224 px, HA1 regression), images per second over an
epoch, of three pipelines measured in one run:

- reference-like: a Dataset that opens and decodes both JPEGs of a row every epoch and applies
  Resize((224, 224)), flip + rotation, ToTensor, Normalize to both (HA1 then uses only the
  anonymized one), DataLoader with the reference's 4 workers (as the PerceptAnon scripts do);
- anonlens cached: images decoded and resized once (`ImageCache`), full fine-tuning; the epoch
  after the first is timed;
- anonlens --freeze-backbone: backbone features computed once, only the head trained; an epoch
  after the feature pass is timed (the feature pass is reported on its own).

    python benchmarks/bench_train.py --pairs 64
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path



def make_data(root: Path, n: int) -> "pd.DataFrame":  # noqa: F821
    import cv2
    import pandas as pd
    from PIL import Image
    from skimage import data

    src = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rows = []
    for i in range(n):
        img = cv2.resize(src[i % 4], (640, 480), interpolation=cv2.INTER_AREA)
        Image.fromarray(img).save(root / f"o{i}.jpg", quality=90)
        Image.fromarray(cv2.GaussianBlur(img, (0, 0), 1 + i % 5)).save(root / f"a{i}.jpg", quality=90)
        rows.append({"original": f"o{i}.jpg", "anonymized": f"a{i}.jpg", "score_mean": 1 + (i % 10)})
    return pd.DataFrame(rows)


def reference_epoch(df, root: Path, batch: int, device: str = "cpu", workers: int = 4) -> float:
    import warnings

    import torch
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on 2 cores, as the reference would
    from torchvision import transforms as T

    tf = T.Compose([T.Resize((224, 224)), T.RandomHorizontalFlip(), T.RandomRotation(10), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class Rows(Dataset):
        def __len__(self):
            return len(df)

        def __getitem__(self, i):
            r = df.iloc[i]
            orig = tf(Image.open(root / r["original"]).convert("RGB"))  # the reference transforms both images
            anon = tf(Image.open(root / r["anonymized"]).convert("RGB"))
            return orig, anon, torch.tensor([(r["score_mean"] - 1) / 9], dtype=torch.float32)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Linear(512, 1)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    model.train()
    t = time.perf_counter()
    for _, x, y in DataLoader(Rows(), batch_size=batch, shuffle=True, num_workers=workers):
        opt.zero_grad()
        loss_fn(torch.sigmoid(model(x.to(device))), y.to(device)).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return len(df) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference-like pipeline (the reference's default: 4)")
    ap.add_argument("--device", default="cpu", help="cpu (the issue's target) or cuda (anonlens then uses mixed precision; the reference-like loop does not)")
    args = ap.parse_args()
    from anonlens.learn.train import TrainOptions, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        df = make_data(root, args.pairs)
        ref = reference_epoch(df, root, args.batch, args.device, args.workers)
        base = dict(ha="HA1", backbone="resnet18", batch_size=args.batch, pretrained=False, device=args.device)
        cached = train(df, df.iloc[:4], root, root / "cached", TrainOptions(**base, epochs=2))
        t = time.perf_counter()
        frozen = train(df, df.iloc[:4], root, root / "frozen", TrainOptions(**base, epochs=3, freeze_backbone=True))
        frozen_total = time.perf_counter() - t
        ips_cached = cached.history[1]["images_per_second"]
        ips_frozen = frozen.history[2]["images_per_second"]
        print(f"machine: {os.cpu_count()} CPU cores, device {args.device}, Python {sys.version.split()[0]}; {args.pairs} rows of 640x480 JPEGs, ResNet-18, 224 px, batch {args.batch}")
        print("| pipeline | images/s (one epoch) | ratio to reference-like |")
        print("|---|---:|---:|")
        print(f"| reference-like: decode and transform both images of every row every epoch, {args.workers} workers | {ref:.1f} | 1.0x |")
        print(f"| anonlens, cached decoding (2nd epoch) | {ips_cached:.1f} | {ips_cached / ref:.1f}x |")
        print(f"| anonlens --freeze-backbone (3rd epoch) | {ips_frozen:.0f} | {ips_frozen / ref:.0f}x |")
        print(f"\nfrozen backbone, whole run of 3 epochs including the one-off feature pass: {frozen_total:.1f} s")


if __name__ == "__main__":
    main()

"""A-GAN training iterations per second: anonlens' single-forward update against the reference's
update order (a generator forward before each of the three steps), same losses, same batches,
measured in one run. Crops are real photos (scikit-image) with a person box.

CPU (the tiny configuration the tests use, ngf = ndf = 8), and, with ``--device cuda``, the full
size (ngf = ndf = 64, 256 px) with and without mixed precision::

    python benchmarks/bench_agan.py                      # CPU, tiny
    python benchmarks/bench_agan.py --device cuda --ngf 64 --batch-size 1 4
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np


def make_batch(batch_size: int):
    import cv2
    from skimage import data

    from anonlens.generative.agan.data import _tensors
    from anonlens.generative.agan.train import _collate

    photos = [data.astronaut(), cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB), data.coffee(), data.chelsea()]
    items = []
    for i in range(batch_size):
        img = cv2.resize(photos[i % len(photos)], (256, 256), interpolation=cv2.INTER_AREA)
        x1, y1 = 90 + 7 * (i % 5), 30 + 5 * (i % 4)
        box = (x1, y1, x1 + 60 + 4 * (i % 3), y1 + 180)
        items.append(_tensors(img, img, box, "grey"))
    return _collate(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ngf", type=int, default=8, help="generator/discriminator width (64: the reference's full size)")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="alternate the two orders this many times; the median is reported")
    ap.add_argument("--preset", default="single-stage")
    args = ap.parse_args()

    import torch

    from anonlens.generative.agan.train import AganTrainer, iterations_per_second, preset

    rows = []
    amps = [False, True] if args.device.startswith("cuda") else [False]
    for bs in args.batch_size:
        batch = make_batch(bs)
        for amp in amps:
            speeds: dict[str, list[float]] = {"single-forward": [], "reference": []}
            for _ in range(args.repeats):
                for update in speeds:
                    tr = AganTrainer(preset(args.preset, ngf=args.ngf, ndf=args.ngf, batch_size=bs, update=update, device=args.device,
                                            amp=amp, select_by="none"))
                    speeds[update].append(iterations_per_second(tr, batch, args.iters))
            single, ref = float(np.median(speeds["single-forward"])), float(np.median(speeds["reference"]))
            row = {"device": args.device, "ngf": args.ngf, "batch_size": bs, "amp": amp, "reference_it_s": round(ref, 3),
                   "anonlens_it_s": round(single, 3), "speedup": round(single / ref, 3), "images_s_anonlens": round(single * bs, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"\nmachine: {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| batch | AMP | reference order (it/s) | anonlens single forward (it/s) | speed-up | images/s |")
    print("| ---: | :-: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['batch_size']} | {'yes' if r['amp'] else 'no'} | {r['reference_it_s']} | {r['anonlens_it_s']} | "
              f"{r['speedup']}x | {r['images_s_anonlens']} |")


if __name__ == "__main__":
    main()

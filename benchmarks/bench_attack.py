"""Gradient inversion: anonlens against `breaching` (the maintained peer, PyPI 0.1.2) on the same
victim, the same shared gradient, the same starting image and the same settings, in one run.

Printed per attack: iterations per second and the final PSNR of each, and the ratios. The image
is a 32x32 crop of a real photo (scikit-image's astronaut); the victims are untrained, seeded.

- ``inverting-gradients``: SemSim's ``inversed`` preset (cosine, signed Adam lr 0.1, box, step
  decay, TV 1e-4) shortened to ``--iterations``; breaching's ``invertinggradients`` config with the
  same iterations, TV scale and step size. (breaching's TV is a convolution with zero padding, so
  the two priors differ at the border; its scale is set to the same value.)
- ``dlg``: L-BFGS lr 1 on the squared gradient distance with the true label (breaching's
  ``deepleakage`` config; its Euclidean is half of DLG's, which L-BFGS does not care about).

    pip install breaching==0.1.2     # in the test extra
    python benchmarks/bench_attack.py
    python benchmarks/bench_attack.py --device cuda --victim resnet20-4 --iterations 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time

import torch


def _image(size: int = 32) -> torch.Tensor:
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut()[30:230, 150:350], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean()))


def run_anonlens(victim, x, y, gradient, attack: str, iterations: int, device: str, seed: int):
    from anonlens.attacks.inversion import create_attack, invert

    a = create_attack(attack, preset="inversed" if attack == "inverting-gradients" else "dlg", iterations=iterations,
                      **({"labels": "known"} if attack == "dlg" else {}))
    torch.manual_seed(seed)
    start = torch.randn(x.shape)
    t = time.perf_counter()
    res = invert(victim.model, gradient, y, tuple(x.shape), a.config, mean=victim.mean, std=victim.std, seed=seed)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del start
    return res.iterations / dt, victim.denormalize(res.images.to(x.device)), dt


def run_breaching(victim, x, y, gradient, attack: str, iterations: int, device: str, seed: int):
    import breaching
    from breaching.attacks.optimization_based_attack import OptimizationBasedAttacker
    from omegaconf import OmegaConf

    logging.getLogger("breaching").setLevel(logging.WARNING)
    if attack == "inverting-gradients":
        cfg = breaching.get_attack_config("invertinggradients", overrides=[
            f"optim.max_iterations={iterations}", "regularization.total_variation.scale=1e-4", "optim.step_size=0.1",
            f"optim.callback={iterations + 1}"])
    else:
        cfg = breaching.get_attack_config("deepleakage", overrides=[f"optim.max_iterations={iterations}", f"optim.callback={iterations + 1}"])
    model = victim.model
    attacker = OptimizationBasedAttacker(model, torch.nn.CrossEntropyLoss(), cfg, setup=dict(device=torch.device(device), dtype=torch.float))
    meta = OmegaConf.create({"shape": list(x.shape[1:]), "mean": list(victim.mean), "std": list(victim.std), "modality": "vision"})
    payload = [{"parameters": [p.detach() for p in model.parameters()], "buffers": [b.detach() for b in model.buffers()], "metadata": meta}]
    shared = [{"gradients": [g.detach() for g in gradient], "buffers": None,
               "metadata": {"num_data_points": x.shape[0], "labels": y, "local_hyperparams": None}}]
    # the same starting image as anonlens (its generator, seeded)
    start = torch.randn((1, *x.shape), generator=torch.Generator().manual_seed(seed))[0].to(device)
    torch.manual_seed(seed)
    t = time.perf_counter()
    rec, _ = attacker.reconstruct(payload, shared, {}, initial_data=start)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return iterations / dt, victim.denormalize(rec["data"]), dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attack", nargs="+", default=["inverting-gradients", "dlg"])
    ap.add_argument("--victim", default="lenet-zhu", help="resnet20-4, cifar-resnet18 or lenet-zhu (untrained, seeded)")
    ap.add_argument("--iterations", type=int, default=None, help="default: 600 (inverting-gradients), 100 (dlg)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, alternated (median reported)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from anonlens.attacks.objectives import client_gradient
    from anonlens.attacks.victims import load_victim

    victim = load_victim(args.victim, num_classes=10, seed=args.seed)
    victim.model.to(args.device)
    x01 = _image(victim.input_size).to(args.device)
    x = victim.normalize(x01)
    y = torch.tensor([3], device=args.device)
    gradient = client_gradient(victim.model, x, y)
    rows = []
    for attack in args.attack:
        its = args.iterations or (600 if attack == "inverting-gradients" else 100)
        for fn in (run_anonlens, run_breaching):  # warm-up: first calls allocate and pick kernels
            fn(victim, x, y, gradient, attack, 5, args.device, args.seed)
        a_runs, b_runs = [], []
        for _ in range(args.repeats):  # alternated; the median of each
            a_runs.append(run_anonlens(victim, x, y, gradient, attack, its, args.device, args.seed))
            b_runs.append(run_breaching(victim, x, y, gradient, attack, its, args.device, args.seed))
        a_ips, a_rec, a_dt = sorted(a_runs, key=lambda r: r[0])[len(a_runs) // 2]
        b_ips, b_rec, b_dt = sorted(b_runs, key=lambda r: r[0])[len(b_runs) // 2]
        rows.append({"attack": attack, "victim": args.victim, "iterations": its, "device": args.device, "repeats": args.repeats,
                     "anonlens_it_per_s": a_ips, "breaching_it_per_s": b_ips, "speed_ratio": a_ips / b_ips,
                     "anonlens_psnr": _psnr(a_rec, x01), "breaching_psnr": _psnr(b_rec, x01),
                     "anonlens_s": a_dt, "breaching_s": b_dt})
    info = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"torch {info['torch']}, {info['threads']} thread(s), device {args.device}, victim {args.victim}")
    for r in rows:
        print(f"{r['attack']:20s} {r['iterations']:5d} it x{r['repeats']}  anonlens {r['anonlens_it_per_s']:7.2f} it/s PSNR {r['anonlens_psnr']:5.2f} dB | "
              f"breaching {r['breaching_it_per_s']:7.2f} it/s PSNR {r['breaching_psnr']:5.2f} dB | speed x{r['speed_ratio']:.2f}")


if __name__ == "__main__":
    main()

"""AlexNet (torchvision) training throughput at 227x227 on generated images, one device: images/s of
a plain PyTorch SGD loop and of the same loop with the ADMM penalty (admm_pruning.ADMM), from which
docs/alexnet-cost.md projects the Caffe recipe's wall time.

    python benchmarks/alexnet_throughput.py --device cuda --steps 50 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torchvision.models import alexnet

from admm_pruning import ADMM, ADMMSchedule

# The Caffe recipe (docs/reference.md s.4): 40 ADMM iterations of 12 epochs, then 450k retraining
# iterations at batch 256; an ImageNet epoch is 5,005 iterations at batch 256 (1.28M images).
EPOCH_IMAGES = 1_281_167
ADMM_EPOCHS, RETRAIN_IMAGES = 40 * 12, 450_000 * 256


def images_per_second(device: str, steps: int, batch: int, admm: bool, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = alexnet(num_classes=1000).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    pruner = ADMM(model, 21.0, ADMMSchedule(rho=1.5e-3, l2=0.0), update_every=10**9) if admm else None
    x = torch.randn(batch, 3, 227, 227, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=device != "cpu")
    for i in range(steps + 3):  # 3 warm-up steps
        if i == 3:
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if pruner is not None:
            pruner.penalize_()
        opt.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    dense = images_per_second(args.device, args.steps, args.batch_size, False, True)
    admm = images_per_second(args.device, args.steps, args.batch_size, True, True)
    hours = {"dense_epoch": EPOCH_IMAGES / dense / 3600, "admm_phase": ADMM_EPOCHS * EPOCH_IMAGES / admm / 3600,
             "retraining": RETRAIN_IMAGES / dense / 3600}
    out = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "batch_size": args.batch_size, "steps": args.steps, "images_per_s": {"dense": dense, "admm": admm},
           "projected_hours_one_device": hours,
           "projected_hours_8_devices_linear": {k: v / 8 for k, v in hours.items()}}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()

"""The 32x32 architectures gradient-inversion attacks target (and EDI's identity classifier can
train from scratch): CIFAR-style ResNet20-4 and ResNet-18 (3x3 stem, no max-pool), DLG's sigmoid LeNet."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

__all__ = ["VICTIM_ARCHS", "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "build_arch"]

#: the normalisation ATSPrivacy uses for its CIFAR-100 victims (inversefed's CIFAR-10 constants)
CIFAR_MEAN = (0.4914672374725342, 0.4822617471218109, 0.4467701315879822)
CIFAR_STD = (0.24703224003314972, 0.24348513782024384, 0.26158785820007324)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stride-1 stem without max-pool, one stage per entry of
    ``blocks`` (widths double, strides 1, 2, 2, ...), global average pool, linear head."""

    def __init__(self, blocks: tuple[int, ...], width: int, num_classes: int):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2**i, 1 if i == 0 else 2
            layers = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != cout):
                    down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                layers.append(BasicBlock(cin, cout, stride if j == 0 else 1, down))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class LeNetZhu(nn.Module):
    """DLG's LeNet: three 5x5 sigmoid convolutions (strides 2, 2, 1) and one linear layer; weights
    uniform in [-0.5, 0.5] as in the DLG code. Input 32x32."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=1, padding=2), nn.Sigmoid(),
        )
        self.fc = nn.Linear(768, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(m.weight, -0.5, 0.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


VICTIM_ARCHS: Registry[nn.Module] = Registry("victim architecture")
VICTIM_ARCHS.add("resnet20-4", lambda *, num_classes: CifarResNet((3, 3, 3), 64, num_classes),
                 summary="CIFAR ResNet-20 at 4x width (Inverting Gradients / ATSPrivacy's ResNet20-4), 32x32.")
VICTIM_ARCHS.add("cifar-resnet18", lambda *, num_classes: CifarResNet((2, 2, 2, 2), 64, num_classes),
                 summary="ResNet-18 with the CIFAR stem (3x3, no max-pool), 32x32.")
VICTIM_ARCHS.add("lenet-zhu", lambda *, num_classes: LeNetZhu(num_classes),
                 summary="DLG's sigmoid LeNet (3 conv + 1 linear), 32x32.")


def build_arch(name: str, num_classes: int) -> nn.Module:
    return VICTIM_ARCHS.create(name, num_classes=num_classes)

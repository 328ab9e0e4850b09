"""OSNet-AIN x1.0 (Zhou et al., "Learning Generalisable Omni-Scale Representations for Person
Re-Identification", 2019), the person re-identification network A-GAN's evaluation embeds crops
with (torchreid's ``osnet_ain_x1_0``), written for anonlens with torchreid's module names so that
its state dicts load by name. Embeddings are the 512-d output of the ``fc`` block in eval mode;
the identity classifier of a checkpoint is not needed and its keys are ignored."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

__all__ = ["OSNetAIN"]


def _norm(channels: int, instance: bool) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if instance else nn.BatchNorm2d(channels)


class ConvLayer(nn.Module):
    """conv, norm (BatchNorm, or InstanceNorm with ``instance``), ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, instance: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn = _norm(cout, instance)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Conv1x1Linear(nn.Module):
    def __init__(self, cin: int, cout: int, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x):
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)


class LightConv3x3(nn.Module):
    """1x1 (linear), depth-wise 3x3, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class LightConvStream(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int):
        super().__init__()
        self.layers = nn.Sequential(*[LightConv3x3(cin if i == 0 else cout, cout) for i in range(depth)])

    def forward(self, x):
        return self.layers(x)


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=True)

    def forward(self, x):
        g = F.adaptive_avg_pool2d(x, 1)
        return x * self.fc2(F.relu(self.fc1(g))).sigmoid()


class OSBlock(nn.Module):
    """Omni-scale residual block: four light-conv streams of depth 1..4 through a shared gate.
    ``instance``: the AIN variant's InstanceNorm on the residual branch (``OSBlockINin``)."""

    def __init__(self, cin: int, cout: int, instance: bool = False, reduction: int = 4, streams: int = 4):
        super().__init__()
        mid = cout // reduction
        self.conv1 = ConvLayer(cin, mid, 1)
        self.conv2 = nn.ModuleList([LightConvStream(mid, mid, t) for t in range(1, streams + 1)])
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, cout, bn=not instance)
        self.downsample = Conv1x1Linear(cin, cout) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if instance else None

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = sum(self.gate(stream(x1)) for stream in self.conv2)
        x3 = self.conv3(x2)
        if self.IN is not None:
            x3 = self.IN(x3)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(x3 + identity)


class OSNetAIN(nn.Module):
    """``osnet_ain_x1_0``: input ``(B, 3, 256, 128)`` normalised with ImageNet's mean/std;
    output ``(B, 512)`` embeddings (eval mode)."""

    #: which blocks carry InstanceNorm, per stage (torchreid's osnet_ain_x1_0)
    LAYOUT = ((True, True), (False, True), (True, False))

    def __init__(self, channels=(64, 256, 384, 512), feature_dim: int = 512):
        super().__init__()
        c = channels
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, padding=3, instance=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        for i, layout in enumerate(self.LAYOUT):
            stages.append(nn.Sequential(*[OSBlock(c[i] if j == 0 else c[i + 1], c[i + 1], instance=inst) for j, inst in enumerate(layout)]))
        self.conv2, self.conv3, self.conv4 = stages
        self.pool2 = nn.Sequential(ConvLayer(c[1], c[1], 1), nn.AvgPool2d(2, stride=2))
        self.pool3 = nn.Sequential(ConvLayer(c[2], c[2], 1), nn.AvgPool2d(2, stride=2))
        self.conv5 = ConvLayer(c[3], c[3], 1)
        self.fc = nn.Sequential(nn.Linear(c[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU())
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv3(x))
        x = self.conv5(self.conv4(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

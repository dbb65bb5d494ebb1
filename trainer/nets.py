"""Networks: the small quality student, iResNet backbones, the ArcFace margin head.

The student (``QualityNet``) is a MobileFaceNet-style network (inverted residual
bottlenecks, global depthwise pooling) with a 1-output regression head. It is ~0.14 M
parameters and ~28 M multiply-adds per 112×112 face, a fraction of the detector's cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1,
            act: bool = True, pad: int | None = None) -> nn.Sequential:
    p = k // 2 if pad is None else pad
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project (+ skip when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride, groups=mid),
            conv_bn(mid, cout, 1, act=False))
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.body(x)
        return x + y if self.skip else y


class MobileFaceNetS(nn.Module):
    """A small MobileFaceNet: 112×112×3 -> ``emb_dim`` embedding."""

    def __init__(self, emb_dim: int = 128, width: tuple[int, int, int, int] = (24, 32, 64, 96),
                 in_ch: int = 3) -> None:
        super().__init__()
        c0, c1, c2, c3 = width
        self.stem = nn.Sequential(conv_bn(in_ch, c0, 3, 2), conv_bn(c0, c0, 3, 1, groups=c0))
        self.blocks = nn.Sequential(
            Bottleneck(c0, c1, 2, 2), Bottleneck(c1, c1, 1, 2), Bottleneck(c1, c1, 1, 2),
            Bottleneck(c1, c2, 2, 2), Bottleneck(c2, c2, 1, 2), Bottleneck(c2, c2, 1, 2),
            Bottleneck(c2, c3, 2, 2),
        )
        self.expand = conv_bn(c3, 2 * c3, 1)
        self.gdc = conv_bn(2 * c3, 2 * c3, 7, 1, groups=2 * c3, act=False, pad=0)
        self.fc = nn.Linear(2 * c3, emb_dim, bias=False)
        self.bn = nn.BatchNorm1d(emb_dim)
        self.emb_dim = emb_dim
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(self.blocks(self.stem(x)))
        x = self.gdc(x).flatten(1)
        out: torch.Tensor = self.bn(self.fc(x))
        return out


class IBasic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x) + self.down(x)
        return out


class IResNet(nn.Module):
    """ArcFace's iResNet (18: [2,2,2,2], 50: [3,4,14,3]) -> ``emb_dim`` embedding."""

    def __init__(self, layers: tuple[int, ...], emb_dim: int = 512, in_ch: int = 3) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        self.stem = nn.Sequential(nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.PReLU(64))
        blocks: list[nn.Module] = []
        cin = 64
        for n, w in zip(layers, widths, strict=True):
            for i in range(n):
                blocks.append(IBasic(cin, w, 2 if i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512 * 7 * 7, emb_dim)
        self.bn = nn.BatchNorm1d(emb_dim)
        self.emb_dim = emb_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.blocks(self.stem(x))).flatten(1)
        out: torch.Tensor = self.bn(self.fc(x))
        return out


def backbone(name: str, emb_dim: int, in_ch: int = 3) -> nn.Module:
    if name == "mobilefacenet-s":
        return MobileFaceNetS(emb_dim, in_ch=in_ch)
    if name == "iresnet18":
        return IResNet((2, 2, 2, 2), emb_dim, in_ch)
    if name == "iresnet50":
        return IResNet((3, 4, 14, 3), emb_dim, in_ch)
    raise ValueError(f"unknown backbone {name!r}")


class QualityNet(nn.Module):
    """Backbone + CR regression head; ``forward`` returns (embedding, predicted CR).

    ``in_ch`` 4: the crop's RGB and the landmark map (landmark guidance)."""

    def __init__(self, name: str = "mobilefacenet-s", emb_dim: int = 128, in_ch: int = 3,
                 aux_dim: int = 0) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.backbone = backbone(name, emb_dim, in_ch)
        self.head = nn.Linear(emb_dim, 1)
        # The degradation code's projection (trainer/degrep.py); training only, never
        # exported.
        self.aux = nn.Linear(emb_dim, aux_dim) if aux_dim else None

    def degradation_code(self, emb: torch.Tensor) -> torch.Tensor:
        if self.aux is None:
            raise ValueError("this QualityNet has no degradation head (aux_dim 0)")
        return F.normalize(self.aux(emb), dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.backbone(x)
        return emb, self.head(emb).squeeze(1)


class QualityOnly(nn.Module):
    """What we export: input crop batch -> raw CR (B,)."""

    def __init__(self, net: QualityNet) -> None:
        super().__init__()
        self.backbone, self.head = net.backbone, net.head  # not the training-only aux head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.backbone(x)).squeeze(1)
        return out


class ArcFaceHead(nn.Module):
    """Additive angular margin softmax (s, m) that also exposes the raw cosines."""

    def __init__(self, emb_dim: int, n_classes: int, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, emb_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.s, self.m = s, m

    def forward(self, emb: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits with margin on the target class, plain cosines to every centre)."""
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target)
        with_margin = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m),
                                  target - self.m * math.sin(self.m))
        logits = cos.scatter(1, labels[:, None], with_margin) * self.s
        return logits, cos


def cr_from_cosines(cos: torch.Tensor, labels: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """CR = CCS / (NNCCS + 1 + ε) from cosines to the class centres (the head's weights)."""
    ccs = cos.gather(1, labels[:, None]).squeeze(1)
    others = cos.scatter(1, labels[:, None], -2.0)
    nnccs = others.max(dim=1).values
    return ccs / (nnccs + 1.0 + eps)


def count_macs(model: nn.Module, size: int = 112, channels: int = 3) -> int:
    """Multiply-adds of one forward pass on a size×size crop (convolutions + linears)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += out.numel() * (mod.in_channels // mod.groups) * k

    def lin_hook(mod: nn.Linear, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * mod.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin_hook) for m in model.modules()
              if isinstance(m, nn.Linear)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, channels, size, size))
    model.train(was)
    for h in hooks:
        h.remove()
    return total

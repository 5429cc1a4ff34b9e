"""Backbones, heads and the contrastive wrappers: shapes, variants, registry errors, EMA and queues."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ccli.errors import BadInput
from ccli.models import available_backbones, backbone_entry, build_backbone, count_parameters
from ccli.models.contrastive import MoBYModel, MultiViewNet
from ccli.models.heads import MLP, byol_mlp, simclr_projector


@pytest.mark.parametrize(
    "name, channels, size, out_dim",
    [
        ("small_cnn", 1, 8, 128),
        ("small_cnn", 1, 28, 128),
        ("small_cnn", 3, 32, 128),
        ("resnet18", 3, 32, 512),
        ("resnet18-cifar", 1, 28, 512),
        ("resnet18-stl", 3, 96, 512),
        ("resnet34-cifar", 3, 32, 512),
        ("resnet50-cifar", 3, 32, 2048),
    ],
)
def test_backbone_output_shape(name, channels, size, out_dim):
    torch.manual_seed(0)
    model = build_backbone(name, channels, size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, out_dim)
    assert model.out_dim == out_dim
    assert model.backbone_name == name


def test_small_cnn_is_about_93k_parameters():
    assert 90_000 <= count_parameters(build_backbone("small_cnn", 1, 8)) <= 96_000


def test_resnet_stems_follow_the_variant():
    cifar = build_backbone("resnet18-cifar", 3, 32).net
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    stl = build_backbone("resnet18-stl", 3, 96).net
    assert stl.conv1.kernel_size == (3, 3)
    assert isinstance(stl.maxpool, nn.MaxPool2d) and stl.maxpool.kernel_size == 2
    imagenet = build_backbone("resnet18-imagenet", 3, 224).net
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    # A plain name picks the stem from the image size.
    assert build_backbone("resnet18", 3, 32).stem == "cifar"
    assert build_backbone("resnet18", 3, 96).stem == "stl"
    assert build_backbone("resnet18", 3, 224).stem == "imagenet"
    # ResNet-18 at 96 px: 96 → 49 after the STL stem's pool, 7×7 before global pooling.
    trunk = nn.Sequential(*list(stl.children())[:-2])
    assert trunk(torch.randn(1, 3, 96, 96)).shape[-1] == 7


def test_registry_lists_builtins_and_cbam():
    names = available_backbones()
    for name in ("small_cnn", "resnet18", "resnet34", "resnet50", "resnet18-cifar", "resnet50-stl"):
        assert name in names


def test_unknown_backbone_is_bad_input_listing_the_valid_ones():
    with pytest.raises(BadInput, match=r"backbone 'resnet7' is unknown \(available: .*small_cnn"):
        build_backbone("resnet7", 3, 32)


def test_image_size_outside_the_backbone_range_is_bad_input():
    with pytest.raises(BadInput, match=r"backbone 'resnet18' takes images of 16–1024 px, but the data are 8 px"):
        backbone_entry("resnet18", 1, 8)
    with pytest.raises(BadInput, match="small_cnn"):
        backbone_entry("small_cnn", 3, 96)
    with pytest.raises(BadInput, match="4-channel"):
        backbone_entry("small_cnn", 4, 8)


def test_mlp_heads():
    torch.manual_seed(0)
    head = simclr_projector(512, out_dim=128)
    assert head(torch.randn(4, 512)).shape == (4, 128)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    pred = byol_mlp(256, 64, 256)
    assert any(isinstance(m, nn.BatchNorm1d) for m in pred.modules())
    assert MLP(8, 8, 3, layers=1)(torch.randn(2, 8)).shape == (2, 3)


def test_multiview_net_groups_views_by_size_and_matches_separate_passes():
    torch.manual_seed(0)
    net = MultiViewNet(build_backbone("small_cnn", 1, 16), MLP(128, 32, 16, batch_norm=False)).eval()
    views = [torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16), torch.randn(3, 1, 8, 8)]
    with torch.no_grad():
        joint = net(views)
        separate = [net.projector(net.backbone(v)) for v in views]
    assert [o.shape for o in joint] == [(3, 16)] * 3
    for a, b in zip(joint, separate):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_moby_ema_update_and_fifo_queue():
    torch.manual_seed(0)
    model = MoBYModel(MLP(4, 4, 4, batch_norm=False), MLP(4, 4, 3, batch_norm=False), MLP(3, 4, 3), queue_size=4,
                      dim=3)
    online = [p.detach().clone() for p in model.online.backbone.parameters()]
    for p in model.online.backbone.parameters():
        p.data.add_(1.0)
    target_before = [p.detach().clone() for p in model.target_backbone.parameters()]
    model.ema_update(0.9)
    for t, t0, o in zip(model.target_backbone.parameters(), target_before, online):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * (o + 1.0))
    assert not any(p.requires_grad for p in model.target_backbone.parameters())
    # FIFO: 3 rows at 0..2, then 3 more wrap around to rows 3, 0, 1.
    a1, b1 = torch.ones(3, 3), 2 * torch.ones(3, 3)
    model.enqueue(a1, b1)
    assert int(model.queue_ptr) == 3
    a2, b2 = 3 * torch.ones(3, 3), 4 * torch.ones(3, 3)
    model.enqueue(a2, b2)
    assert int(model.queue_ptr) == 2
    assert model.queue_a[:, 0].tolist() == [3.0, 3.0, 1.0, 3.0]
    assert model.queue_b[:, 0].tolist() == [4.0, 4.0, 2.0, 4.0]

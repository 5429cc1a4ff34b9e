"""Batched augmentation of a uint8 image batch held on the device (`--augment-on gpu`).

`BatchAugmenter(views, mean, std)` turns images [B, C, H, W] uint8 into one normalised float
batch per view. Every random parameter is drawn per sample, as a tensor, from the same
distribution as the per-sample CPU path in `ccli.data.augment` (same recipe, `ViewAug`):

- random-resized crop + flip: per-sample separable resampling matrices (antialiased bilinear,
  the same weights as torchvision's `resized_crop`), applied as two batched matmuls; crop boxes
  drawn with torchvision's 10-try rejection rule;
- flip-and-shift: reflect padding, then a per-sample gather at the drawn offsets;
- colour jitter: per-sample factors and a per-sample random order of the four operations;
- grayscale, intensity jitter, blur (grouped separable convolution, one kernel per sample),
  RandAugment (per round, each op applied once to the samples that drew it, with their
  magnitudes), Cutout (a per-sample box mask).

Nothing here is CUDA-specific: the same code runs on CPU tensors, which is how the tests
check it against the CPU path. Randomness comes only from the `torch.Generator` passed in,
so a batch is reproducible from (seed, epoch, step).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ccli.data.augment import RANDAUG_NAMES, RANDAUG_OPS, ViewAug

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device, dtype=torch.float64)


def _randint(n: int, high_inclusive: torch.Tensor | int, gen: torch.Generator, device) -> torch.Tensor:
    """Uniform integers in [0, high] per sample (high may differ per sample)."""
    u = torch.rand(n, generator=gen, device=device, dtype=torch.float64)
    high = torch.as_tensor(high_inclusive, device=device, dtype=torch.float64)
    return torch.floor(u * (high + 1)).long()


def sample_crop_boxes(n: int, height: int, width: int, scale, ratio, gen: torch.Generator, device="cpu") -> torch.Tensor:
    """[n, 4] int64 boxes (i, j, h, w): torchvision RandomResizedCrop.get_params, vectorised."""
    area = height * width
    u1 = torch.rand(n, 10, generator=gen, device=device, dtype=torch.float64)
    u2 = torch.rand(n, 10, generator=gen, device=device, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u1)
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u2)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    w_sel, h_sel = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w_sel = torch.where(found, w_sel, torch.full_like(w_sel, fw)).long()
    h_sel = torch.where(found, h_sel, torch.full_like(h_sel, fh)).long()
    i = _randint(n, height - h_sel, gen, device)
    j = _randint(n, width - w_sel, gen, device)
    # Python's draw order differs (i, j only on success), the distribution does not.
    i = torch.where(found, i, torch.full_like(i, (height - fh) // 2))
    j = torch.where(found, j, torch.full_like(j, (width - fw) // 2))
    return torch.stack([i, j, h_sel, w_sel], dim=1)


def sample_batch_params(aug: ViewAug, n: int, height: int, width: int, channels: int, gen: torch.Generator,
                        device="cpu") -> dict[str, torch.Tensor]:
    """All random parameters of one view for n images, as tensors (keys as in augment.sample_params)."""
    p: dict[str, torch.Tensor] = {}
    if aug.geometry == "crop":
        p["crop"] = sample_crop_boxes(n, height, width, aug.scale, aug.ratio, gen, device)
    elif aug.geometry == "shift":
        pad = int(aug.size * aug.shift)
        p["shift"] = torch.stack([_randint(n, 2 * pad, gen, device), _randint(n, 2 * pad, gen, device)], dim=1)
    p["flip"] = torch.rand(n, generator=gen, device=device) < aug.flip_p
    if aug.randaug_n:
        ops = torch.randint(len(RANDAUG_OPS), (n, aug.randaug_n), generator=gen, device=device)
        lo = torch.tensor([o[1] for o in RANDAUG_OPS], device=device, dtype=torch.float64)[ops]
        hi = torch.tensor([o[2] for o in RANDAUG_OPS], device=device, dtype=torch.float64)[ops]
        u = torch.rand(n, aug.randaug_n, generator=gen, device=device, dtype=torch.float64)
        p["randaug_ops"] = ops
        p["randaug_mags"] = lo + (hi - lo) * u
    if aug.jitter_p:
        p["jitter"] = torch.rand(n, generator=gen, device=device) < aug.jitter_p
        p["jitter_factors"] = torch.stack([
            _uniform(n, max(0.0, 1 - aug.brightness), 1 + aug.brightness, gen, device),
            _uniform(n, max(0.0, 1 - aug.contrast), 1 + aug.contrast, gen, device),
            _uniform(n, max(0.0, 1 - aug.saturation), 1 + aug.saturation, gen, device),
            _uniform(n, -aug.hue, aug.hue, gen, device),
        ], dim=1)
        p["jitter_order"] = torch.rand(n, 4, generator=gen, device=device).argsort(dim=1)
    if aug.gray_p:
        p["gray"] = torch.rand(n, generator=gen, device=device) < aug.gray_p
    if aug.intensity_p:
        p["intensity"] = torch.rand(n, generator=gen, device=device) < aug.intensity_p
        p["intensity_scale"] = _uniform(n, *aug.intensity_scale, gen, device)
        lg = (math.log(aug.intensity_gamma[0]), math.log(aug.intensity_gamma[1]))
        p["intensity_gamma"] = torch.exp(_uniform(n, *lg, gen, device))
    if aug.blur_p:
        p["blur"] = torch.rand(n, generator=gen, device=device) < aug.blur_p
        p["blur_sigma"] = _uniform(n, *aug.blur_sigma, gen, device)
    if aug.cutout:
        p["cutout"] = torch.stack([
            _randint(n, aug.size - 1, gen, device),
            _randint(n, aug.size - 1, gen, device),
            1 + _randint(n, aug.cutout - 1, gen, device),
        ], dim=1)
    return p


def params_from_single(plist: Sequence[dict], device="cpu") -> dict[str, torch.Tensor]:
    """Stack per-sample parameter dicts (augment.sample_params) into batch tensors, for apply_batch."""
    out: dict[str, torch.Tensor] = {}
    keys = plist[0].keys()
    for key in keys:
        values = [p[key] for p in plist]
        if key == "randaug":
            out["randaug_ops"] = torch.tensor([[k for k, _ in v] for v in values], device=device)
            out["randaug_mags"] = torch.tensor([[m for _, m in v] for v in values], device=device, dtype=torch.float64)
        else:
            out[key] = torch.tensor(values, device=device)
    return out


# ------------------------------------------------------------------------------------------
# Batched operations on float images [B, C, H, W] in [0, 1]; factors are [B] tensors.
# ------------------------------------------------------------------------------------------
def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (x[:, 0:1] * _GRAY[0] + x[:, 1:2] * _GRAY[1] + x[:, 2:3] * _GRAY[2])


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    r = _col(ratio, a)
    return (a * r + b * (1 - r)).clamp_(0.0, 1.0)


def adjust_brightness(x, f):
    return (x * _col(f, x)).clamp_(0.0, 1.0)


def adjust_contrast(x, f):
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)


def adjust_saturation(x, f):
    return x if x.shape[1] == 1 else _blend(x, _gray(x), f)


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(dim=1)
    maxc, _ = img.max(dim=1)
    minc, _ = img.min(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(dim=1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    vpqt = torch.stack((v, p, q, t), dim=1)
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=img.device)
    return vpqt.gather(1, select[:, i].permute(1, 0, 2, 3))


def adjust_hue(x, f):
    if x.shape[1] == 1:
        return x
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + f.to(x.dtype).view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def adjust_sharpness(x, f):
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    c = x.shape[1]
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    # torchvision blends towards the smoothed image inside the border and keeps the border as is.
    return _blend(x, blurred, f)


def solarize(x, threshold):
    t = _col(threshold, x) / 255.0
    return torch.where(x >= t, 1.0 - x, x)


def posterize(x, bits):
    levels = _col(torch.pow(2.0, torch.floor(bits)), x)
    return torch.minimum(torch.floor(x * levels), levels - 1) / levels


def _affine_theta(angle, translate_x, translate_y, shear_x, shear_y, width: int, height: int, dtype, device):
    """torchvision's inverse affine matrix (about the centre, scale 1), per sample, → [B, 2, 3] theta."""
    rot = torch.deg2rad(angle)
    sx, sy = torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-translate_x) + m1 * (-translate_y)
    m5 = m3 * (-translate_x) + m4 * (-translate_y)
    theta = torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1).to(dtype=dtype, device=device)
    # torchvision's _affine_grid: pixel-centred base grid, theta rescaled by half the size.
    theta = theta.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], dtype=dtype, device=device)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, dtype=dtype, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, dtype=dtype, device=device)
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                        torch.ones(height, width, dtype=dtype, device=device)], -1).view(1, height * width, 3)
    return base.expand(len(angle), -1, -1).bmm(theta).view(len(angle), height, width, 2)


def _geometric(x, name: str, mag: torch.Tensor):
    zeros = torch.zeros_like(mag)
    h, w = x.shape[-2:]
    angle, tx, ty, shx, shy = zeros, zeros, zeros, zeros, zeros
    if name == "rotate":
        angle = mag
    elif name == "shear_x":
        shx = torch.rad2deg(torch.atan(mag))
    elif name == "shear_y":
        shy = torch.rad2deg(torch.atan(mag))
    elif name == "translate_x":
        tx = mag * w
    elif name == "translate_y":
        ty = mag * h
    grid = _affine_theta(angle.double(), tx.double(), ty.double(), shx.double(), shy.double(), w, h, x.dtype, x.device)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def randaug_op_batch(x: torch.Tensor, name: str, mag: torch.Tensor) -> torch.Tensor:
    """One RandAugment op applied to a batch, magnitude per sample (see augment.RANDAUG_OPS)."""
    from torchvision.transforms.v2 import functional as TF

    if name == "identity":
        return x
    if name == "autocontrast":
        return TF.autocontrast(x)
    if name == "equalize":
        return TF.equalize(x)
    if name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        return _geometric(x, name, mag)
    if name == "solarize":
        return solarize(x, mag)
    if name == "color":
        return adjust_saturation(x, mag)
    if name == "contrast":
        return adjust_contrast(x, mag)
    if name == "brightness":
        return adjust_brightness(x, mag)
    if name == "sharpness":
        return adjust_sharpness(x, mag)
    if name == "posterize":
        return posterize(x, mag)
    raise ValueError(f"unknown RandAugment op {name!r}")


def _apply_where(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """x with fn applied to the samples where mask is true.

    On a GPU the op runs on the whole batch and `torch.where` keeps the selected samples: no
    host synchronisation (selecting a subset needs `nonzero`, which waits for the device). On
    CPU only the subset is computed, which saves the work.
    """
    if x.is_cuda:
        full = torch.arange(x.shape[0], device=x.device)
        return torch.where(mask.view(-1, 1, 1, 1), fn(x, full), x)
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return fn(x, idx)
    x = x.clone()
    x[idx] = fn(x[idx], idx)
    return x


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    b, c, h, w = x.shape
    half = (k - 1) * 0.5
    t = torch.linspace(-half, half, k, device=x.device, dtype=x.dtype)
    kern = torch.exp(-0.5 * (t[None, :] / sigma.to(x.dtype)[:, None]) ** 2)
    kern = kern / kern.sum(dim=1, keepdim=True)  # [B, k]
    weight = kern.repeat_interleave(c, dim=0)  # one kernel per (sample, channel)
    pad = k // 2
    # torchvision pads by reflection; a side shorter than the pad falls back to replication.
    mode = "reflect" if pad < min(h, w) else "replicate"
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, weight.view(b * c, 1, 1, k), groups=b * c)
    y = F.conv2d(y, weight.view(b * c, 1, k, 1), groups=b * c)
    return y.view(b, c, h, w)


def _resize_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int,
                   flip: torch.Tensor | None, dtype) -> torch.Tensor:
    """Per-sample [B, out, in] matrices that crop [start, start+length) and resize it to out_size.

    The weights are those of PyTorch's antialiased bilinear interpolation (the kernel behind
    torchvision's `resized_crop(..., antialias=True)`): a triangle filter widened by the
    downscaling factor, truncated to the crop and renormalised. Enlarging crops reduce to plain
    bilinear interpolation with edge clamping. A flip reverses the output axis.
    """
    scale = (length / out_size)[:, None, None]  # [B, 1, 1]
    support = torch.where(scale >= 1, scale, torch.ones_like(scale))
    invscale = torch.where(scale >= 1, 1.0 / scale, torch.ones_like(scale))
    centre = scale * (torch.arange(out_size, device=start.device, dtype=torch.float64)[None, :, None] + 0.5)
    pos = torch.arange(in_size, device=start.device, dtype=torch.float64)[None, None, :] - start[:, None, None]
    lo = torch.floor(centre - support + 0.5).clamp(min=0)
    hi = torch.minimum(torch.floor(centre + support + 0.5), length[:, None, None])
    weight = (1.0 - ((pos - centre + 0.5) * invscale).abs()).clamp(min=0.0)
    weight = weight * ((pos >= lo) & (pos < hi))
    weight = weight / weight.sum(dim=2, keepdim=True).clamp(min=1e-12)
    if flip is not None:
        weight = torch.where(flip.view(-1, 1, 1), weight.flip(1), weight)
    return weight.to(dtype)


def apply_batch(aug: ViewAug, images: torch.Tensor, params: dict[str, torch.Tensor], mean: Sequence[float],
                std: Sequence[float]) -> torch.Tensor:
    """One view of a uint8 (or 0–1 float) batch [B, C, H, W] → normalised float [B, C, size, size]."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    b, c, h, w = x.shape
    s = aug.size
    if "crop" in params:
        i, j, ch, cw = params["crop"].to(torch.float64).unbind(1)
        rows = _resize_matrix(i, ch, h, s, None, x.dtype)  # [B, s, H]
        cols = _resize_matrix(j, cw, w, s, params["flip"], x.dtype)  # [B, s, W]
        # Crop, resize and flip in two batched matmuls: out = R_y · x · R_xᵀ per sample and channel.
        x = torch.matmul(rows[:, None], torch.matmul(x, cols.transpose(1, 2)[:, None]))
    else:
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        if "shift" in params:
            pad = int(s * aug.shift)
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            ar = torch.arange(s, device=x.device)
            rows = (params["shift"][:, 0, None] + ar)[:, :, None]  # [B, s, 1]
            cols = (params["shift"][:, 1, None] + ar)[:, None, :]  # [B, 1, s]
            x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        x = torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
    if "randaug_ops" in params:
        ops, mags = params["randaug_ops"], params["randaug_mags"]
        for r in range(ops.shape[1]):
            for k, name in enumerate(RANDAUG_NAMES):
                if name == "identity":
                    continue
                x = _apply_where(x, ops[:, r] == k, lambda sub, idx, n=name, r=r: randaug_op_batch(sub, n, mags[idx, r]))
    if "jitter" in params:
        fac, order, on = params["jitter_factors"], params["jitter_order"], params["jitter"]
        ops = [(aug.brightness, adjust_brightness), (aug.contrast, adjust_contrast),
               (aug.saturation if c == 3 else 0.0, adjust_saturation), (aug.hue if c == 3 else 0.0, adjust_hue)]
        for r in range(4):
            for k, (strength, fn) in enumerate(ops):
                if strength:
                    x = _apply_where(x, on & (order[:, r] == k), lambda sub, idx, fn=fn, k=k: fn(sub, fac[idx, k]))
    if "gray" in params and c == 3:
        x = _apply_where(x, params["gray"], lambda sub, idx: _gray(sub).expand(-1, 3, -1, -1))
    if "intensity" in params:
        sc, gm = params["intensity_scale"], params["intensity_gamma"]
        x = _apply_where(x, params["intensity"],
                         lambda sub, idx: (_col(sc[idx], sub) * sub.clamp(min=0.0) ** _col(gm[idx], sub)).clamp_(0, 1))
    if "blur" in params:
        sig = params["blur_sigma"]
        x = _apply_where(x, params["blur"], lambda sub, idx: _gaussian_blur(sub, sig[idx], aug.kernel_size))
    m = torch.tensor(list(mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    sd = torch.tensor(list(std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = (x - m) / sd
    if "cutout" in params:
        cy, cx, length = params["cutout"].unbind(1)
        y0 = (cy - length // 2).view(-1, 1, 1)
        x0 = (cx - length // 2).view(-1, 1, 1)
        ar = torch.arange(s, device=x.device)
        inside_y = (ar.view(1, -1, 1) >= y0) & (ar.view(1, -1, 1) < y0 + length.view(-1, 1, 1))
        inside_x = (ar.view(1, 1, -1) >= x0) & (ar.view(1, 1, -1) < x0 + length.view(-1, 1, 1))
        x = x.masked_fill((inside_y & inside_x)[:, None], 0.0)
    return x.contiguous()


class BatchAugmenter:
    """Batched implementation of a list of views: `augmenter(images_u8, generator)` → list of views.

    `images_u8` is [B, C, H, W] uint8 on any device; the generator must live on that device.
    """

    def __init__(self, views: Sequence[ViewAug], mean: Sequence[float], std: Sequence[float]):
        self.views = list(views)
        self.mean = list(mean)
        self.std = list(std)

    def sample_params(self, view: int, n: int, height: int, width: int, channels: int, gen: torch.Generator,
                      device="cpu") -> dict[str, torch.Tensor]:
        return sample_batch_params(self.views[view], n, height, width, channels, gen, device)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        b, c, h, w = images.shape
        out = []
        for aug in self.views:
            params = sample_batch_params(aug, b, h, w, c, gen, images.device)
            out.append(apply_batch(aug, images, params, self.mean, self.std))
        return out

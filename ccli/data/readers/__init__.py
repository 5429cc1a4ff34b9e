"""Per-format dataset readers behind ccli.data.sources' spec grammar: one planner per kind."""

from __future__ import annotations

from ccli.data.readers.arrays import (
    FASHION_MNIST_CLASSES,
    _plan_cifar10,
    _plan_cifar100_20,
    _plan_digits,
    _plan_h5,
    _plan_idx,
    _plan_npz,
    _plan_stl10,
)
from ccli.data.readers.folders import (
    IMAGENET10_SYNSETS,
    IMAGENET_DOGS_SYNSETS,
    _plan_folder,
    _plan_imagenet_subset,
    _plan_tiny_imagenet,
)

PLANNERS = {
    "digits": _plan_digits,
    "mnist": _plan_idx([str(i) for i in range(10)]),
    "fashion-mnist": _plan_idx(FASHION_MNIST_CLASSES),
    "cifar10": _plan_cifar10,
    "cifar100-20": _plan_cifar100_20,
    "stl10": _plan_stl10,
    "imagenet10": _plan_imagenet_subset(IMAGENET10_SYNSETS),
    "imagenet-dogs": _plan_imagenet_subset(IMAGENET_DOGS_SYNSETS),
    "tiny-imagenet": _plan_tiny_imagenet,
    "folder": _plan_folder,
    "npz": _plan_npz,
    "h5": _plan_h5,
}

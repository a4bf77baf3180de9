"""Dense weights from a local file, in place of the pretraining stage (AlexNet on ImageNet takes
90 epochs; the papers start from a trained reference model).

Accepted: a torchvision AlexNet state dict (e.g. ``alexnet-owt-7be5be79.pth``, keys
``features.0.weight`` ...), mapped onto the papers' layer names, or a plain state dict of the
configured model (keys ``conv1.weight`` ..., as ``weights.pt`` of a pretrain stage). The file's
sha256 keys the stage cache, so a different file never reuses a stale stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from admm_pruning.foundations.errors import ConfigError

# torchvision.models.AlexNet module path -> the papers' layer name (models.AlexNet attribute).
TORCHVISION_ALEXNET = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}


def from_torchvision_alexnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision AlexNet state dict to ``models.AlexNet``'s keys."""
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module not in TORCHVISION_ALEXNET:
            raise KeyError(f"{key}: not a parameter of torchvision's AlexNet")
        out[f"{TORCHVISION_ALEXNET[module]}.{param}"] = value
    return out


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_dense_checkpoint(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model`` (strictly: every key and shape must match); returns the sha256.

    Raises ConfigError, naming ``pretrain.checkpoint``, for a missing file or a mismatch
    (e.g. torchvision's 1000-class fc8 into a 10-class model).
    """
    key = f"pretrain.checkpoint={path}"
    if not Path(path).is_file():
        raise ConfigError(f"{key}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch's own errors: the file is not a tensor file
        raise ConfigError(f"{key}: not a PyTorch checkpoint of tensors ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}: not a state dict of tensors")
    if any(k.startswith(("features.", "classifier.")) for k in state):
        try:
            state = from_torchvision_alexnet(state)
        except KeyError as exc:
            raise ConfigError(f"{key}: {exc.args[0]}") from exc
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ConfigError(f"{key}: keys do not match the model (missing {missing[:4]}, unexpected {extra[:4]})")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ConfigError(f"{key}: {k} has shape {list(v.shape)} in the file, "
                              f"{list(own[k].shape)} in the model")
    model.load_state_dict(state)
    return file_sha256(path)

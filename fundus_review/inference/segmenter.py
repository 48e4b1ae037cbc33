"""The optic disc / cup segmenter: a small U-Net on an EfficientNet-Lite0 encoder.

The network sees the photograph stretched to a square (``input_size``, 256 px by default, the
same "resize" geometry as ``core.transform.make_transform``) normalised to [-1, 1], and returns
two logits per pixel: channel 0 the optic disc, channel 1 the optic cup (sigmoid each; the cup is
meant to lie inside the disc, which the post-processing enforces).

A shipped segmenter is a folder ``segmenter.toml`` (the card: name, input size, channels and the
provenance of its training: command, data, folds, per-fold Dice) + ``segmenter.safetensors``
(float16). ``load_segmenter(path)`` reads it; ``Segmenter.predict(rgb)`` gives the two
probability maps on the photograph's own grid.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from fundus_review.errors import FundusReviewError
from fundus_review.inference.toml_writer import dump_toml

CARD_FILE = "segmenter.toml"
WEIGHTS_FILE = "segmenter.safetensors"
CHANNELS = ("optic_disc", "optic_cup")
#: encoder stages whose outputs feed the decoder (timm EfficientNet-Lite0 block indices) and
#: their channel counts: strides 2, 4, 8, 16, 32.
_SKIP_BLOCKS = (0, 1, 2, 4, 6)
_SKIP_CHANNELS = (16, 24, 40, 112, 320)
DEFAULT_DECODER = (80, 48, 32, 16)
MEAN = 0.5
STD = 0.5


class SegmenterError(FundusReviewError):
    """A segmenter folder is missing, unreadable or does not fit the network."""


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)
    )


class _Up(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(_conv_bn(c_in + c_skip, c_out), _conv_bn(c_out, c_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))


def make_backbone() -> nn.Module:
    """A fresh timm ``efficientnet_lite0`` (no download) whose stem and blocks are the encoder."""
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False)


class DiscCupNet(nn.Module):
    """U-Net: EfficientNet-Lite0 stem + blocks as the encoder, a light bilinear decoder."""

    def __init__(
        self, decoder: tuple[int, ...] = DEFAULT_DECODER, backbone: nn.Module | None = None
    ) -> None:
        """``backbone``: a timm ``efficientnet_lite0`` to take the encoder from (training passes
        one with ImageNet weights); a fresh one otherwise (weights loaded afterwards)."""
        super().__init__()
        if backbone is None:
            backbone = make_backbone()
        self.conv_stem, self.bn1, self.blocks = backbone.conv_stem, backbone.bn1, backbone.blocks
        if len(decoder) != len(_SKIP_CHANNELS) - 1:
            raise ValueError(f"decoder needs {len(_SKIP_CHANNELS) - 1} widths, got {decoder}")
        c, ups = _SKIP_CHANNELS[-1], []
        for c_skip, c_out in zip(reversed(_SKIP_CHANNELS[:-1]), decoder, strict=True):
            ups.append(_Up(c, c_skip, c_out))  # strides 16, 8, 4, 2
            c = c_out
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(decoder[-1], len(CHANNELS), 1)
        # Start from the prior (disc and cup cover a few % of a photo), not from p = 0.5
        # everywhere: otherwise the first epochs only learn to say "background".
        nn.init.constant_(self.head.bias, -3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 2, S, S) logits (computed at stride 2, upsampled bilinearly)."""
        size = x.shape[-2:]
        feats = []
        x = self.bn1(self.conv_stem(x))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _SKIP_BLOCKS:
                feats.append(x)
        x = feats.pop()
        for up in self.ups:
            x = up(x, feats.pop())
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


@dataclass
class SegmenterCard:
    name: str
    input_size: int = 256
    decoder: tuple[int, ...] = DEFAULT_DECODER
    channels: tuple[str, ...] = CHANNELS
    threshold: float = 0.5
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "segmenter",
            "architecture": "unet-efficientnet_lite0",
            "input_size": self.input_size,
            "decoder": list(self.decoder),
            "channels": list(self.channels),
            "threshold": self.threshold,
            "mean": [MEAN] * 3,
            "std": [STD] * 3,
            "weights": WEIGHTS_FILE,
            "description": self.description,
            "training": self.training,
        }


def to_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) float tensor, stretched, normalised to [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - MEAN) / STD


class Segmenter:
    """A loaded segmenter: ``predict(rgb)`` -> (disc_prob, cup_prob), float32 on the photo grid."""

    def __init__(self, path: Path, card: SegmenterCard, net: DiscCupNet, sha256: str) -> None:
        self.path, self.card, self.net, self.weights_sha256 = path, card, net, sha256
        # CPU threads for one proposal. One: on the 2-core machine shared with other
        # processes, two threads made a 1024-px proposal far slower in some runs (each op's
        # synchronisation waits for a busy core): medians 1.2 s and 6.0 s against 0.14-0.18 s
        # with one thread (bench/segmenter_speed.py).
        self.threads: int | None = 1

    @property
    def name(self) -> str:
        return self.card.name

    @torch.inference_mode()
    def logits(self, rgb: np.ndarray) -> torch.Tensor:
        """(2, H, W) logits on the photograph's grid of one pass over the whole image."""
        h, w = rgb.shape[:2]
        out = self.net(to_input(rgb, self.card.input_size))
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)[0]

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(disc_prob, cup_prob) float32 (H, W): a pass over the whole photograph finds the
        disc; a second pass over a box of ``CROP_FACTOR`` disc diameters around it (the same
        views the network was trained on) refines disc and cup there."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise SegmenterError(
                f"segmenter {self.name}: expected an (H, W, 3) image, got {rgb.shape}"
            )
        with _threads(self.threads):
            return self._predict(rgb)

    def _predict(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = self.logits(rgb)
        first = (logits[0] > 0).numpy()
        box = disc_crop_box(first, CROP_FACTOR) if first.any() else None
        if box is not None:
            crop = crop_padded(rgb, box)
            y0, x0, y1, x1 = box
            inner = self.logits(crop)
            h, w = rgb.shape[:2]
            r0, c0, r1, c1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
            logits[:, r0:r1, c0:c1] = inner[:, r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]
        probs = torch.sigmoid(logits)
        return probs[0].numpy().astype(np.float32), probs[1].numpy().astype(np.float32)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` for the block (None: unchanged)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: side of the refining box, in disc diameters (per axis, in the stretched frame the network sees)
CROP_FACTOR = 3.0


def disc_crop_box(disc: np.ndarray, factor: float = CROP_FACTOR) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) box centred on the disc's bounding box, ``factor`` times its larger
    relative extent (as a fraction of the image's height / width) on both axes; it may reach
    outside the image (``crop_padded`` pads with black)."""
    h, w = disc.shape
    rows, cols = np.nonzero(disc.any(axis=1))[0], np.nonzero(disc.any(axis=0))[0]
    cy, cx = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    frac = min(1.0, factor * max((rows[-1] + 1 - rows[0]) / h, (cols[-1] + 1 - cols[0]) / w))
    half_h, half_w = max(frac * h / 2, 8.0), max(frac * w / 2, 8.0)
    return (int(round(cy - half_h)), int(round(cx - half_w)),
            int(round(cy + half_h)), int(round(cx + half_w)))  # fmt: skip


def crop_padded(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``a[y0:y1, x0:x1]`` with zeros where the box leaves the array."""
    y0, x0, y1, x1 = box
    out = np.zeros((y1 - y0, x1 - x0, *a.shape[2:]), dtype=a.dtype)
    h, w = a.shape[:2]
    r0, c0, r1, c1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if r1 > r0 and c1 > c0:
        out[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0] = a[r0:r1, c0:c1]
    return out


def write_segmenter(path: str | os.PathLike, card: SegmenterCard, net: nn.Module) -> Path:
    """Write ``segmenter.toml`` + float16 ``segmenter.safetensors`` into the folder ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS_FILE)
    text = dump_toml(card.to_dict())
    tmp = out / (CARD_FILE + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / CARD_FILE)
    return out


def load_segmenter(path: str | os.PathLike, threads: int | None = None) -> Segmenter:
    """Read a segmenter folder (raises ``SegmenterError`` naming the folder and the problem)."""
    folder = Path(path)
    card_path, weights = folder / CARD_FILE, folder / WEIGHTS_FILE
    if not card_path.is_file():
        raise SegmenterError(f"{folder}: not a segmenter folder (no {CARD_FILE})")
    try:
        doc = tomllib.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SegmenterError(f"{card_path}: cannot read the card: {exc}") from exc
    if doc.get("kind") != "segmenter":
        raise SegmenterError(f"{card_path}: kind is {doc.get('kind')!r}, expected 'segmenter'")
    try:
        card = SegmenterCard(
            name=str(doc["name"]),
            input_size=int(doc.get("input_size", 256)),
            decoder=tuple(int(c) for c in doc.get("decoder", DEFAULT_DECODER)),
            channels=tuple(doc.get("channels", CHANNELS)),
            threshold=float(doc.get("threshold", 0.5)),
            description=str(doc.get("description", "")),
            training=dict(doc.get("training", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SegmenterError(f"{card_path}: bad card field: {exc}") from exc
    if tuple(card.channels) != CHANNELS:
        raise SegmenterError(f"{card_path}: channels {card.channels}, expected {CHANNELS}")
    if not weights.is_file():
        raise SegmenterError(f"{folder}: weights file {WEIGHTS_FILE} is missing")
    if threads is not None:
        torch.set_num_threads(threads)
    net = DiscCupNet(card.decoder)
    try:
        state = load_file(str(weights))
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except Exception as exc:  # safetensors and torch raise several types
        raise SegmenterError(f"{weights}: does not fit the network: {exc}") from exc
    net.eval()
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    return Segmenter(folder, card, net, sha)

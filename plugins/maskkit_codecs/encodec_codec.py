"""The optional ``encodec`` codec: EnCodec's 24 kHz encoder/decoder (what the original used).

``pip install "maskkit[encodec]"`` installs the ``encodec`` package; this module imports it
only when the codec is instantiated. The architecture is EnCodec's causal 24 kHz model:
128-dimensional latents at 75 frames per second (hop 320). The encoding is the encoder's
continuous latent ``[B, 128, T]``; with ``bandwidth`` set it is passed through the residual
vector quantizer first (1.5, 3, 6, 12 or 24 kbps), as the original's tokens would be.

Weights come only from a local file (``weights=/path/encodec_24khz-d7cc33bc.th``, the
state dict published by Meta, or any state dict of the same architecture). Nothing is ever
downloaded; without ``weights`` the model is randomly initialized (for tests and shape
checks; its audio is noise). The codec's parameters are frozen: gradients flow through it
to the audio and the encoding, never into it.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from maskkit import Codec, ConfigError, EncodingSpec, PluginError

_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)
_INSTALL_HINT = 'pip install "maskkit[encodec]"'


@dataclass
class EncodecConfig:
    weights: str | None = field(default=None, metadata={
        "help": "local path of an EnCodec 24 kHz state dict (.th/.pt); none = random init (tests only)"})
    bandwidth: float | None = field(default=None, metadata={
        "help": "quantize with the RVQ at this many kbps (1.5, 3, 6, 12, 24); none = continuous latents"})

    def validate(self) -> None:
        if self.bandwidth is not None and self.bandwidth not in _BANDWIDTHS:
            raise ConfigError(f"codec 'encodec': option 'bandwidth' must be one of {list(_BANDWIDTHS)} "
                              f"(kbps), got {self.bandwidth}")


def _import_encodec() -> Any:
    try:
        import encodec  # noqa: F401
        from encodec import EncodecModel
    except ImportError as e:
        raise PluginError(f"codec 'encodec' needs the 'encodec' package, which is not installed "
                          f"({e}). Install it with: {_INSTALL_HINT}") from None
    return EncodecModel


def _load_state(path: str) -> dict[str, Tensor]:
    p = os.path.expanduser(path)
    if not os.path.isfile(p):
        raise ConfigError(f"codec 'encodec': option 'weights': {path}: no such file (weights are read "
                          f"from a local file only; nothing is downloaded)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"codec 'encodec': option 'weights': {path}: cannot be loaded as a torch "
                          f"state dict ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model", "best_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"codec 'encodec': option 'weights': {path}: holds a {type(state).__name__}, "
                          f"expected a state dict")
    return state


class EncodecCodec(Codec):
    """EnCodec 24 kHz: ``[B, 1, N] -> [B, 128, ceil(N / 320)] -> [B, 1, N]``."""

    name = "encodec"
    description = "EnCodec 24 kHz latents (128 dims, 75 Hz); weights from a local file; extra [encodec]."
    Config = EncodecConfig
    SAMPLE_RATE = 24000
    HOP = 320
    DIM = 128

    def __init__(self, config: EncodecConfig | None = None) -> None:
        super().__init__(config)
        EncodecModel = _import_encodec()
        with warnings.catch_warnings():  # encodec uses the deprecated torch.nn.utils.weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            model = EncodecModel.encodec_model_24khz(pretrained=False)
        if self.config.weights:
            state = _load_state(self.config.weights)
            missing, unexpected = model.load_state_dict(state, strict=False)
            quantized = self.config.bandwidth is not None
            needed = [k for k in missing if quantized or not k.startswith("quantizer.")]
            if needed or unexpected:
                raise ConfigError(
                    f"codec 'encodec': option 'weights': {self.config.weights} does not fit EnCodec 24 kHz "
                    f"({len(needed)} missing keys, e.g. {needed[:3]}; {len(unexpected)} unexpected, "
                    f"e.g. {unexpected[:3]})")
        else:
            warnings.warn("codec 'encodec': no weights given, so the codec is randomly initialized: its "
                          "encodings carry little of the music and what it decodes is noise (for tests); "
                          "pass --codec-opt weights=PATH (a local EnCodec 24 kHz state dict)",
                          UserWarning, stacklevel=2)
        if self.config.bandwidth is not None:
            model.set_target_bandwidth(self.config.bandwidth)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model

    @property
    def sample_rate(self) -> int:
        return self.SAMPLE_RATE

    @property
    def spec(self) -> EncodingSpec:
        return EncodingSpec(dim=self.DIM, frame_rate=self.SAMPLE_RATE / self.HOP,
                            sample_rate=self.SAMPLE_RATE, channel_freqs=None)

    def num_frames(self, num_samples: int) -> int:
        return int(math.ceil(int(num_samples) / self.HOP))

    def train(self, mode: bool = True) -> EncodecCodec:
        """The codec is a fixed transform: its network stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def encode(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"codec 'encodec': encode expects audio [B, 1, N], got shape "
                             f"{tuple(audio.shape)}")
        emb = self.model.encoder(audio)
        if self.config.bandwidth is not None:
            q = self.model.quantizer
            codes = q.encode(emb, self.model.frame_rate, self.config.bandwidth)
            emb = q.decode(codes)
        return emb

    def decode(self, encoding: Tensor, length: int | None = None) -> Tensor:
        if encoding.dim() != 3 or encoding.shape[1] != self.DIM:
            raise ValueError(f"codec 'encodec': decode expects [B, {self.DIM}, T], got shape "
                             f"{tuple(encoding.shape)}")
        audio = self.model.decoder(encoding)
        if length is not None:
            n = int(length)
            if audio.shape[-1] >= n:
                audio = audio[..., :n]
            else:
                audio = torch.nn.functional.pad(audio, (0, n - audio.shape[-1]))
        return audio

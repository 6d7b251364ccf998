"""The codec interface: audio ``[B, 1, N]`` <-> encoding ``[B, D, T]``.

Codecs are plugins (hook ``register_codecs``). The built-in default ``stft`` needs no
weights and is exactly invertible; its channels map to known frequencies, published in
:attr:`Codec.spec` so that frequency-based strategies split in Hz.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from .config import build_config
from .strategy import EncodingSpec, NoOptions

#: The codec used when none is named: the built-in STFT codec (plugin ``codecs``), which needs
#: no download and is exactly invertible.
DEFAULT_CODEC = "stft"


def resolve_codec(codec: str | Codec | None) -> Codec:
    """A codec instance from a name, an instance, or None (:data:`DEFAULT_CODEC`)."""
    if isinstance(codec, Codec):
        return codec
    from .plugins import build_codec

    return build_codec(codec if codec is not None else DEFAULT_CODEC)


class Codec(nn.Module):
    """Base class of codecs. Subclasses set ``name``, ``Config`` and implement the methods."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        if config is None or isinstance(config, (Mapping, list, tuple)):
            config = build_config(self.Config, config, owner=f"codec '{self.name}'")
        self.config = config

    @property
    def sample_rate(self) -> int:
        raise NotImplementedError

    @property
    def spec(self) -> EncodingSpec:
        """Dimension, frame rate and (if known) channel frequencies of the encoding."""
        raise NotImplementedError

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` float audio at :attr:`sample_rate` -> ``[B, D, T]``."""
        raise NotImplementedError

    def decode(self, encoding: Tensor, length: int | None = None) -> Tensor:
        """``[B, D, T]`` -> ``[B, 1, N]``; ``length`` trims or pads to N samples."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """T for an input of ``num_samples`` samples."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

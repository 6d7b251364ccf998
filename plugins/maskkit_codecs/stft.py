"""The ``stft`` codec: a compressed complex spectrogram, exactly invertible, no weights.

Encoding: ``X = STFT(x)`` (Hann window, ``center=True``, orthonormal scaling), each bin's
magnitude compressed with ``g(m) = (m + eps)**p - eps**p`` while its phase is kept, laid
out as real parts then imaginary parts: ``[B, 2F, T]`` with ``F = n_fft // 2 + 1``.
Channel ``k`` and ``F + k`` both carry frequency ``k * sample_rate / n_fft`` Hz, published
in :attr:`STFTCodec.spec` ``.channel_freqs`` so that frequency strategies split in Hz.

Why this representation: the power law (default ``p = 0.5``) shrinks the dynamic range of
music spectra so that a small transformer sees quiet partials as well as loud ones, while
the real/imag layout keeps the phase, so decoding is exact (``g`` is inverted in closed
form, then ``istft``). ``eps`` bounds the slope of ``g`` at zero, so gradients are finite
everywhere, silence included. ``g`` is evaluated as ``eps**p * expm1(p * log1p(m / eps))``
for float32 accuracy on small magnitudes.

Defaults for 24 kHz music and a small transformer on a CPU: ``n_fft=512``, ``hop=256`` ->
D = 514 channels, 93.75 frames per second (375 frames for a 4-second segment), 46.9 Hz
per bin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from maskkit import Codec, ConfigError, EncodingSpec


@dataclass
class STFTConfig:
    sample_rate: int = field(default=24000, metadata={"help": "audio sample rate (Hz)", "min": 1000})
    n_fft: int = field(default=512, metadata={"help": "FFT size (window length), samples", "min": 16})
    hop_length: int = field(default=256, metadata={"help": "hop between frames, samples (<= n_fft // 2)",
                                                   "min": 1})
    power: float = field(default=0.5, metadata={
        "help": "magnitude compression exponent p in (0, 1]; 1 = no compression", "min": 0.05, "max": 1.0})
    eps: float = field(default=1e-3, metadata={
        "help": "compression knee: g(m) = (m + eps)^p - eps^p; bounds the gradient at 0", "min": 1e-8})

    def validate(self) -> None:
        if self.hop_length > self.n_fft // 2:
            raise ConfigError(f"codec 'stft': option 'hop_length' ({self.hop_length}) must be at most "
                              f"n_fft // 2 ({self.n_fft // 2}) so that the Hann window overlap-adds "
                              f"to an invertible transform")


class STFTCodec(Codec):
    """Compressed complex STFT: ``[B, 1, N] -> [B, 2 * (n_fft // 2 + 1), T] -> [B, 1, N]``."""

    name = "stft"
    description = "Power-compressed complex STFT (real/imag channels); exact inverse, no weights."
    Config = STFTConfig

    def __init__(self, config: STFTConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.n_freqs = c.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    # -- facts ------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def dim(self) -> int:
        return 2 * self.n_freqs

    @property
    def spec(self) -> EncodingSpec:
        c = self.config
        freqs = tuple(k * c.sample_rate / c.n_fft for k in range(self.n_freqs))
        return EncodingSpec(dim=self.dim, frame_rate=c.sample_rate / c.hop_length, sample_rate=c.sample_rate,
                            channel_freqs=freqs + freqs)

    def num_frames(self, num_samples: int) -> int:
        """T for ``num_samples`` samples (``center=True``: one frame per hop, plus one)."""
        return 1 + int(num_samples) // self.config.hop_length

    # -- compression ------------------------------------------------------------------------
    def _compress_ratio(self, mag: Tensor) -> Tensor:
        """``g(m) / m``, finite everywhere (its limit ``p * eps**(p-1)`` at m = 0)."""
        p, eps = self.config.power, self.config.eps
        if p == 1.0:
            return torch.ones_like(mag)
        pos = mag > 0
        safe = torch.where(pos, mag, torch.ones_like(mag))
        g = (eps ** p) * torch.expm1(p * torch.log1p(safe / eps))
        return torch.where(pos, g / safe, torch.full_like(mag, p * eps ** (p - 1.0)))

    def _expand_ratio(self, gmag: Tensor) -> Tensor:
        """``m / g`` for ``m = g^{-1}(g)``: ``eps * expm1(log1p(g / eps**p) / p) / g``."""
        p, eps = self.config.power, self.config.eps
        if p == 1.0:
            return torch.ones_like(gmag)
        pos = gmag > 0
        safe = torch.where(pos, gmag, torch.ones_like(gmag))
        m = eps * torch.expm1(torch.log1p(safe / eps ** p) / p)
        return torch.where(pos, m / safe, torch.full_like(gmag, eps ** (1.0 - p) / p))

    # -- transform --------------------------------------------------------------------------
    def _check_audio(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor):
            hint = (" (torch.from_numpy(x).view(1, 1, -1) makes one of a NumPy song)"
                    if type(audio).__module__ == "numpy" else "")
            raise ValueError(f"codec 'stft': encode expects a torch.Tensor [B, 1, N], got "
                             f"{type(audio).__name__}{hint}")
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"codec 'stft': encode expects audio [B, 1, N], got shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise ValueError(f"codec 'stft': audio must be floating point, got {audio.dtype}")
        return audio

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` -> ``[B, D, T]`` with ``D = 2 * (n_fft // 2 + 1)``, ``T = 1 + N // hop``."""
        audio = self._check_audio(audio)
        c = self.config
        B, _, N = audio.shape
        # reflect padding needs more than n_fft // 2 samples; shorter clips are zero-padded
        pad_mode = "reflect" if N > c.n_fft // 2 else "constant"
        spec = torch.stft(audio.reshape(B, N), n_fft=c.n_fft, hop_length=c.hop_length,
                          window=self.window.to(audio.dtype), center=True, pad_mode=pad_mode,
                          normalized=True, onesided=True, return_complex=True)  # [B, F, T]
        spec = spec * self._compress_ratio(spec.abs())
        return torch.cat([spec.real, spec.imag], dim=1)

    def decode(self, encoding: Tensor, length: int | None = None) -> Tensor:
        """``[B, D, T]`` -> ``[B, 1, N]``; ``N = length`` or ``(T - 1) * hop``."""
        c = self.config
        if encoding.dim() != 3 or encoding.shape[1] != self.dim:
            raise ValueError(f"codec 'stft': decode expects [B, {self.dim}, T], got shape "
                             f"{tuple(encoding.shape)}")
        B, _, T = encoding.shape
        spec = torch.complex(encoding[:, : self.n_freqs], encoding[:, self.n_freqs:])
        spec = spec * self._expand_ratio(spec.abs())
        n = int(length) if length is not None else (T - 1) * c.hop_length
        audio = torch.istft(spec, n_fft=c.n_fft, hop_length=c.hop_length,
                            window=self.window.to(encoding.dtype), center=True, normalized=True,
                            onesided=True, length=n)
        return audio.reshape(B, 1, n)

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_fft={c.n_fft}, hop_length={c.hop_length}, power={c.power}, D={self.dim}, "
                f"frame_rate={c.sample_rate / c.hop_length:.2f}")


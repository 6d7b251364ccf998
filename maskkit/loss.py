"""The seed's combined training loss.

The output audio is compared with both songs, with weights ``input_weight`` and
``target_weight`` (how much it should resemble each), by three terms per reference::

    rms   mean |env(out) - env(ref)|, env = frame RMS (frame ``rms_frame``, hop /4)
    stft  mean over resolutions of  ||S_out - S_ref||_F / ||S_ref||_F        (spectral convergence)
                                  + mean |log S_out - log S_ref|          (log-magnitude L1)
          S = |STFT| with Hann windows, n_fft in ``fft_sizes``, hop = n_fft / 4
    mel   mean |log(M_out + eps) - log(M_ref + eps)|, M = torchaudio MelSpectrogram (magnitude)

    reconstruction = sum over ref in (input, target) of
                     w_ref * (rms_weight * rms_ref + stft_weight * stft_ref + mel_weight * mel_ref)
    total          = reconstruction + mask_reg_weight * reg_loss + balance_weight * balance_loss

``reg_loss`` is the strategy's regularization (``Masks.reg_loss``; the seed's default weight
0.1) and ``balance_loss`` its ``Masks.extras["balance_loss"]`` when it has one.

Every reconstruction term is a mean of per-example values (spectral convergence is taken per
example), so its loss over a global batch equals the mean of its losses over equal shards:
data-parallel training gives the same reconstruction gradients as one process on the whole
batch. A strategy's ``reg_loss`` / ``balance_loss`` may be batch statistics (the CreativeAgent's
balance and temporal-diversity terms are, as in the seed): under DDP each rank computes them on
its own shard, which is close to, but not the same as, the whole batch's. The loss runs in
float32 with autocast off, and is finite on silent audio (eps inside every log, norm and
square root).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from .errors import ConfigError
from .metrics import stft_magnitude

_EPS = 1e-7


@dataclass
class LossConfig:
    """Weights and resolutions of :class:`CombinedLoss` (saved in every checkpoint)."""

    rms_weight: float = field(default=1.0, metadata={"help": "weight of the RMS-envelope term", "min": 0.0})
    stft_weight: float = field(default=1.0, metadata={"help": "weight of the multi-resolution STFT term",
                                                      "min": 0.0})
    mel_weight: float = field(default=1.0, metadata={"help": "weight of the log-mel term", "min": 0.0})
    input_weight: float = field(default=0.5, metadata={
        "help": "how much the output should resemble the input song", "min": 0.0})
    target_weight: float = field(default=0.5, metadata={
        "help": "how much the output should resemble the target song", "min": 0.0})
    mask_reg_weight: float = field(default=0.1, metadata={
        "help": "weight of the strategy's regularization loss (the seed's default 0.1)", "min": 0.0})
    balance_weight: float = field(default=0.1, metadata={
        "help": "weight of the strategy's balance loss (Masks.extras['balance_loss'])", "min": 0.0})
    fft_sizes: tuple[int, ...] = field(default=(512, 1024, 2048), metadata={
        "help": "STFT sizes of the multi-resolution term (comma-separated)"})
    hop_sizes: tuple[int, ...] | None = field(default=None, metadata={
        "help": "hops of the STFT term, one per size (default: size // 4)"})
    n_mels: int = field(default=80, metadata={"help": "mel bands of the mel term", "min": 1})
    mel_n_fft: int = field(default=1024, metadata={"help": "FFT size of the mel term", "min": 2})
    mel_hop: int | None = field(default=None, metadata={"help": "hop of the mel term (default: n_fft // 4)",
                                                        "min": 1})
    rms_frame: int = field(default=1024, metadata={"help": "frame of the RMS envelope (hop: frame // 4)",
                                                   "min": 4})
    sample_rate: int = field(default=24000, metadata={"help": "sample rate of the audio (Hz)", "min": 1})

    def validate(self) -> None:
        if not self.fft_sizes or any(n < 2 for n in self.fft_sizes):
            raise ConfigError(f"loss: option 'fft_sizes' needs sizes >= 2, got {self.fft_sizes}")
        if self.hop_sizes is not None:
            if len(self.hop_sizes) != len(self.fft_sizes):
                raise ConfigError(f"loss: option 'hop_sizes' has {len(self.hop_sizes)} entries for "
                                  f"{len(self.fft_sizes)} fft_sizes")
            if any(h < 1 for h in self.hop_sizes):
                raise ConfigError(f"loss: option 'hop_sizes' needs hops >= 1, got {self.hop_sizes}")

    def hops(self) -> tuple[int, ...]:
        return self.hop_sizes if self.hop_sizes is not None else tuple(max(1, n // 4) for n in self.fft_sizes)


#: Names of the components :meth:`CombinedLoss.forward` returns, in logging order.
COMPONENTS = ("rms_input", "rms_target", "stft_input", "stft_target", "mel_input", "mel_target",
              "reconstruction", "mask_reg", "balance_loss", "total")


def _audio(x: Tensor, name: str) -> Tensor:
    """``[B, 1, N]`` (or ``[B, N]``) -> ``[B, N]`` float32."""
    if x.dim() == 3 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.dim() != 2:
        raise ValueError(f"CombinedLoss: {name} must be mono audio [B, 1, N], got shape {tuple(x.shape)}")
    return x.float()


class CombinedLoss(nn.Module):
    """RMS + multi-resolution STFT + mel against input and target, plus the mask terms.

    ``forward(output_audio, input_audio, target_audio, reg_loss=None, balance_loss=None)``
    returns ``(total, components)``: the scalar to back-propagate and a dict of detached
    scalars named as in :data:`COMPONENTS` (absent terms are 0), for logging.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        config = config or LossConfig()
        config.validate()
        self.config = config
        self.resolutions = list(zip(config.fft_sizes, config.hops(), strict=True))
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.mel_n_fft,
            hop_length=config.mel_hop or max(1, config.mel_n_fft // 4), n_mels=config.n_mels, power=1.0)

    # -- terms ------------------------------------------------------------------------------
    def _rms_env(self, x: Tensor) -> Tensor:
        frame = self.config.rms_frame
        if x.shape[-1] < frame:
            x = F.pad(x, (0, frame - x.shape[-1]))
        power = F.avg_pool1d(x.square().unsqueeze(1), frame, stride=max(1, frame // 4))
        return (power + _EPS).sqrt()[:, 0]  # [B, frames]

    def _stft_mags(self, x: Tensor) -> list[Tensor]:
        return [stft_magnitude(x, n_fft, hop, getattr(self, f"window_{n_fft}"), eps=_EPS)
                for n_fft, hop in self.resolutions]

    def _log_mel(self, x: Tensor) -> Tensor:
        min_len = self.config.mel_n_fft // 2 + 1  # reflect padding needs more samples than the pad
        if x.shape[-1] < min_len:
            x = F.pad(x, (0, min_len - x.shape[-1]))
        return torch.log(self.mel(x) + _EPS)

    @staticmethod
    def _stft_distance(out: list[Tensor], ref: list[Tensor]) -> Tensor:
        total = out[0].new_zeros(())
        for so, sr in zip(out, ref, strict=True):
            sc = ((so - sr).flatten(1).norm(dim=1) / (sr.flatten(1).norm(dim=1) + _EPS)).mean()
            mag = (so.log() - sr.log()).abs().mean()
            total = total + sc + mag
        return total / len(out)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, output_audio: Tensor, input_audio: Tensor, target_audio: Tensor,
                reg_loss: Tensor | None = None, balance_loss: Tensor | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
        out = _audio(output_audio, "output_audio")
        refs = {"input": _audio(input_audio, "input_audio"), "target": _audio(target_audio, "target_audio")}
        for k, r in refs.items():
            if r.shape != out.shape:
                raise ValueError(f"CombinedLoss: output_audio has shape {tuple(output_audio.shape)} but "
                                 f"{k}_audio has {tuple(r.shape)}; decode with length=N to match")
        c = self.config
        with torch.autocast(device_type=out.device.type, enabled=False):
            env_o, mags_o, mel_o = self._rms_env(out), self._stft_mags(out), self._log_mel(out)
            # Each reference's features once, both references in one batch, without a graph.
            with torch.no_grad():
                both = torch.cat([refs["input"], refs["target"]], dim=0)
                env_r, mags_r, mel_r = self._rms_env(both), self._stft_mags(both), self._log_mel(both)
            B = out.shape[0]
            comps: dict[str, Tensor] = {}
            recon = out.new_zeros(())
            for i, (k, w) in enumerate((("input", c.input_weight), ("target", c.target_weight))):
                sl = slice(i * B, (i + 1) * B)
                comps[f"rms_{k}"] = (env_o - env_r[sl]).abs().mean()
                comps[f"stft_{k}"] = self._stft_distance(mags_o, [m[sl] for m in mags_r])
                comps[f"mel_{k}"] = (mel_o - mel_r[sl]).abs().mean()
                recon = recon + w * (c.rms_weight * comps[f"rms_{k}"] + c.stft_weight * comps[f"stft_{k}"]
                                     + c.mel_weight * comps[f"mel_{k}"])
            total = recon
            zero = out.new_zeros(())
            reg = reg_loss.float().reshape(()) if reg_loss is not None else zero
            bal = balance_loss.float().reshape(()) if balance_loss is not None else zero
            if reg_loss is not None and c.mask_reg_weight:
                total = total + c.mask_reg_weight * reg
            if balance_loss is not None and c.balance_weight:
                total = total + c.balance_weight * bal
        comps["reconstruction"] = recon
        comps["mask_reg"] = reg
        comps["balance_loss"] = bal
        comps["total"] = total
        return total, {k: comps[k].detach() for k in COMPONENTS}

"""The encoder at a lower frame rate (`encoder_stride`): the transformer layers see averaged groups of frames, and the
output comes back to the front-end's frame rate, so the heads, the CTC alphabet's timing and every tool that reads
frames (alignment, subtitles, streaming) keep the teacher's 50 frames a second.

This file travels to the Hugging Face Hub with the weights (``trust_remote_code=True``): torch only.
"""

import torch
from torch import nn


class DistilXLSREncoderStride(nn.Module):
    """Squeezeformer's Temporal U-Net (Kim et al., 2022) for a 2-layer student: every linear layer, the attention
    and the positional convolution work on `stride` times fewer frames (most of what a log-mel student computes at
    XLSR-53 shapes), and the last layer's output comes back to the frame rate with a skip connection from the frames
    that went in. Down: the mean of each group's real frames (padding never counts, so a clip in a padded batch
    gives what it gives alone). Up: a linear layer writes `stride` output frames from each coarse one (starting as
    a plain repeat), plus `skip_scale` (per channel, zero at first) times the input frames. Squeezeformer repeats;
    a learnt expansion is what lets CTC put a letter's spike on one frame of a pair and a blank on the other (in the
    mini-lab, repeat + skip alone left the student's CTC posteriors 8x further from the teacher's: 0.91 KL against
    0.12). It costs `stride` x hidden^2 per coarse frame, about 4% of the layers at XLSR-53 shapes."""

    def __init__(self, config):
        super().__init__()
        self.stride = int(config.encoder_stride)
        self.expand = nn.Linear(config.hidden_size, self.stride * config.hidden_size)
        self.skip_scale = nn.Parameter(torch.zeros(config.hidden_size))
        self.reset_to_repeat()

    @torch.no_grad()
    def reset_to_repeat(self):
        """The start: each coarse frame repeated `stride` times, no skip (the copied teacher layers' output as is)."""
        hidden = self.skip_scale.shape[0]
        eye = torch.eye(hidden, dtype=self.expand.weight.dtype, device=self.expand.weight.device)
        self.expand.weight.copy_(eye.repeat(self.stride, 1))
        self.expand.bias.zero_()
        self.skip_scale.zero_()

    def down(
        self, hidden_states: torch.Tensor, frame_mask: torch.BoolTensor | None
    ) -> tuple[torch.Tensor, torch.BoolTensor | None]:
        """`(batch, frames, hidden)` -> `(batch, ceil(frames / stride), hidden)` and the coarse frames' mask (True
        where a group holds a real frame; None without a mask: every group then holds one)."""
        batch, frames, hidden = hidden_states.shape
        groups = -(-frames // self.stride)
        pad = groups * self.stride - frames
        real = torch.ones(batch, frames, dtype=torch.bool, device=hidden_states.device)
        if frame_mask is not None:
            real = frame_mask.bool()
        weights = nn.functional.pad(real.to(hidden_states.dtype), (0, pad)).view(batch, groups, self.stride, 1)
        padded = nn.functional.pad(hidden_states, (0, 0, 0, pad)).view(batch, groups, self.stride, hidden)
        counts = weights.sum(2)
        coarse = (padded * weights).sum(2) / counts.clamp(min=1)
        coarse_mask = counts.squeeze(-1) > 0
        return coarse, (None if frame_mask is None else coarse_mask)

    def up(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`(batch, groups, hidden)` -> `(batch, frames, hidden)`, `frames` being the skip's (the frames that went
        down)."""
        batch, groups, hidden = coarse.shape
        frames = self.expand(coarse).view(batch, groups * self.stride, hidden)[:, : skip.shape[1]]
        return frames + self.skip_scale * skip

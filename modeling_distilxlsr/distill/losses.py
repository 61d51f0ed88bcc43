"""DistilHuBERT's loss, over real frames only.

Per predicted layer: L1 (mean over features) + lambda * -log sigmoid(cosine), each averaged over the real frames
of the batch; the layers are summed. s3prl's distiller (`rec_loss.mean()` over batch, layers, frames and features)
averages the layers instead: the same direction at len(pred_layer_ids) times the scale, which this project's learning
rates are set for. s3prl also averages padded frames in, so a padded batch there learns to predict padding; here a
padded batch gives exactly the loss of its items taken together.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class DistillationLoss:
    loss: torch.Tensor  # scalar, what backward() sees
    l1_per_layer: torch.Tensor  # (num_layers,), detached
    cosine_per_layer: torch.Tensor  # (num_layers,), detached, mean cosine similarity
    num_frames: torch.Tensor  # real frames the means were taken over


def distillation_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    cosine_weight: float = 1.0,
) -> DistillationLoss:
    """`predictions`, `targets`: (batch, layers, frames, dim); `frame_mask`: (batch, frames), True on real frames.
    Computed in float32 whatever the autocast dtype."""
    predictions, targets = predictions.float(), targets.float()
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape.")
    l1 = (predictions - targets).abs().mean(-1)  # (batch, layers, frames)
    cosine = F.cosine_similarity(predictions, targets, dim=-1)
    if frame_mask is None:
        frame_mask = torch.ones(predictions.shape[0], predictions.shape[2], device=predictions.device)
    weights = frame_mask.to(l1.dtype)[:, None, :]  # broadcast over layers
    num_frames = weights.sum()
    l1_per_layer = (l1 * weights).sum((0, 2)) / num_frames
    cos_loss_per_layer = (-F.logsigmoid(cosine) * weights).sum((0, 2)) / num_frames
    cosine_per_layer = (cosine * weights).sum((0, 2)) / num_frames
    loss = (l1_per_layer + cosine_weight * cos_loss_per_layer).sum()
    return DistillationLoss(loss, l1_per_layer.detach(), cosine_per_layer.detach(), num_frames.detach())


def student_distillation_loss(
    outputs,
    targets: torch.Tensor,
    teacher_cnn_features: torch.Tensor | None = None,
    cosine_weight: float = 1.0,
    cnn_loss_weight: float = 0.0,
) -> tuple[torch.Tensor, DistillationLoss, DistillationLoss | None]:
    """The loss of a `DistilXLSRForDistillation` output: the per-layer loss, plus, when `cnn_loss_weight` is set (a
    slim student), its CNN output against the teacher's, `(batch, channels, frames)` both, as one more L1 + cosine
    target. Returns (total, per-layer result, CNN result or None)."""
    layers = distillation_loss(outputs.predictions, targets, outputs.frame_attention_mask, cosine_weight)
    if not cnn_loss_weight:
        return layers.loss, layers, None
    cnn = distillation_loss(  # one "layer" of (batch, 1, frames, channels)
        outputs.cnn_features.transpose(1, 2)[:, None],
        teacher_cnn_features.transpose(1, 2)[:, None],
        outputs.frame_attention_mask,
        cosine_weight,
    )
    return layers.loss + cnn_loss_weight * cnn.loss, layers, cnn


def logit_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Output distillation for a CTC student: KL(teacher || student) between the temperature-softened per-frame CTC
    posteriors, summed over the vocabulary, averaged over real frames, times T^2 (Hinton et al. 2015: the gradient
    keeps its scale whatever T). A CTC student runs at the teacher's frame rate, so frame t of one is frame t of the
    other and no alignment is needed (distil-whisper's sequence models need pseudo-labels instead). `frame_mask`:
    (batch, frames), True on real frames; padded frames never enter the mean, so a padded batch gives the loss of its
    items taken together. Float32 whatever the autocast dtype; zero exactly when the posteriors agree."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ: "
            "output distillation needs the teacher's vocabulary and frame rate."
        )
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
        teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
        per_frame = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True).sum(-1)
    if frame_mask is None:
        frame_mask = torch.ones(per_frame.shape, dtype=torch.bool, device=per_frame.device)
    real = frame_mask.bool()
    # where, not a product: a padded frame's KL may be inf (a CTC model's padded logits are forced to blank), and
    # inf * 0 is NaN
    per_frame = torch.where(real, per_frame, torch.zeros_like(per_frame))
    return per_frame.sum() / real.sum().clamp(min=1) * temperature**2

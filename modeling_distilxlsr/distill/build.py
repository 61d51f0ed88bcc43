"""Distillation's set-up: the truncated teacher's targets and the student initialised from it, from the recipe's
`DistillArguments`. Every configuration error surfaces here, before any data is read."""

import logging

from huggingface_hub.errors import StrictDataclassClassValidationError

from ..corpus.teacher import shipped_teacher_dir
from ..errors import OptionsError
from ..models.configuration_distilxlsr import DistilXLSRConfig
from ..models.folder import load_config
from ..models.modeling_distilxlsr import DistilXLSRForDistillation
from .teacher import (
    TeacherCTCError,
    TeacherTargets,
    has_slim_cnn,
    init_student_from_teacher,
    is_ctc_model,
    load_teacher,
    load_teacher_processor,
)

logger = logging.getLogger(__name__)


def build_teacher_and_student(distill, device):
    """The truncated teacher's targets and the student initialised from it (every configuration error surfaces here,
    before any data is read). A fine-tuned CTC teacher (the default, shipped one included) also gives its CTC
    posteriors, its head and its processor: the student then gets both. Returns (teacher_targets, student, teacher
    parameter count before truncation, the teacher's processor or None, the whole CTC teacher or None)."""
    distill.teacher = distill.teacher or shipped_teacher_dir()
    teacher_is_ctc = is_ctc_model(load_config(distill.teacher))
    if distill.logit_loss_weight is None:
        distill.logit_loss_weight = 1.0 if teacher_is_ctc and not distill.teacher_random_init else 0.0
    outputs_wanted = distill.logit_loss_weight > 0 or distill.pseudo_labels != "none"
    if outputs_wanted and distill.teacher_random_init:
        raise TeacherCTCError(
            "--logit_loss_weight and --pseudo_labels distil what a trained CTC teacher says; a random teacher "
            "(--teacher_random_init) says noise. Set --logit_loss_weight 0 and --pseudo_labels none."
        )
    teacher = load_teacher(distill.teacher, random_init=distill.teacher_random_init, ctc_head=outputs_wanted)
    processor = load_teacher_processor(distill.teacher, teacher.config) if outputs_wanted else None
    ctc_fields = {}
    if outputs_wanted:
        ctc_fields = dict(
            distill_ctc_head=True,
            vocab_size=teacher.config.vocab_size,
            pad_token_id=teacher.config.pad_token_id,
            final_dropout=teacher.config.final_dropout,
        )
    try:
        config = DistilXLSRConfig.from_teacher_config(
            teacher.config,
            num_hidden_layers=distill.num_student_layers,
            pred_layer_ids=distill.pred_layer_ids,
            teacher_name_or_path=distill.teacher,
            cnn_width=distill.student_cnn_width,
            feature_frontend=distill.student_frontend,
            mel_band_mask_prob=distill.mel_band_mask_prob,
            pos_conv=distill.student_pos_conv,
            encoder_stride=distill.student_encoder_stride,
            # DistilHuBERT distils from unmasked input (and an unused mask embedding would break DDP); fine-tuning turns
            # SpecAugment on and learns its mask embedding.
            apply_spec_augment=False,
            mask_time_prob=0.0,
            **ctc_fields,
        )
    except ValueError as err:  # the configuration's own checks (a layer the teacher lacks, ...): the user's options
        raise OptionsError(str(err)) from err
    except StrictDataclassClassValidationError as err:  # `validate_architecture`'s, wrapped by the strict dataclass
        raise OptionsError(str(err.__cause__ or err)) from err
    distill.pred_layer_ids = list(config.pred_layer_ids)  # unset: the thirds of this teacher's depth
    slim_cnn = has_slim_cnn(config, teacher.config)
    if slim_cnn and distill.freeze_cnn:
        raise OptionsError(
            "--freeze_cnn keeps the teacher's CNN, --student_cnn_width and --student_frontend log_mel replace it: "
            "choose one."
        )
    if distill.cnn_loss_weight is None:
        distill.cnn_loss_weight = 1.0 if slim_cnn else 0.0
    student = DistilXLSRForDistillation(config)
    layer_map = dict(enumerate(distill.init_teacher_layers)) if distill.init_teacher_layers else None
    init_student_from_teacher(student, teacher, layer_map=layer_map)
    if distill.freeze_cnn:
        student.freeze_feature_encoder()
    teacher_params = sum(p.numel() for p in teacher.parameters())
    normalize = (
        teacher.config.do_stable_layer_norm
        if distill.normalize_targets == "auto"
        else distill.normalize_targets == "yes"
    )
    ctc_teacher = teacher if outputs_wanted else None
    teacher_targets = TeacherTargets(teacher, distill.pred_layer_ids, normalize=normalize).to(device)
    logger.info(
        "teacher %s%s; student: %.2fM backbone + %.2fM heads, CNN %s; targets: layers %s (weight %g), "
        "normalised=%s, CNN weight %g, CTC posteriors weight %g (T=%g), pseudo-labels %s",
        distill.teacher,
        " (RANDOM weights)" if distill.teacher_random_init else "",
        sum(p.numel() for p in student.distilxlsr.parameters()) / 1e6,
        sum(p.numel() for p in student.prediction_heads.parameters()) / 1e6,
        list(config.conv_dim),
        distill.pred_layer_ids,
        distill.layer_loss_weight,
        normalize,
        distill.cnn_loss_weight,
        distill.logit_loss_weight,
        distill.logit_temperature,
        distill.pseudo_labels,
    )
    return teacher_targets, student, teacher_params, processor, ctc_teacher

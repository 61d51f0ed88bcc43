"""GPU parity: the same random-weight XLSR-53 teacher and default student on CPU fp32 and on `--device` (fp32 and
bf16 autocast), compared by cosine; plus one distillation step and one CTC step on the device, checked finite.

    python benchmarks/gpu_parity.py [--device cuda] [--json OUT.json]

What it guards: the time-major CNN, the hook-recorded hidden states, the frame masks and the float32 CTC loss behave
on the accelerator as the CPU tests say they do. Prints one JSON object.
"""

import argparse
import json
import os

import torch
from harness import write_results
from shapes import student_config, teacher_config_path

from modeling_distilxlsr import DistilXLSRForCTC, DistilXLSRForDistillation
from modeling_distilxlsr.distill.losses import student_distillation_loss
from modeling_distilxlsr.distill.teacher import TeacherTargets, init_student_from_teacher, load_teacher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher = load_teacher(teacher_config_path(), random_init=True)
    student = DistilXLSRForDistillation(student_config())
    init_student_from_teacher(student, teacher)
    ctc = DistilXLSRForCTC(student_config(vocab_size=43, pad_token_id=0))
    targets_fn = TeacherTargets(teacher, student.config.pred_layer_ids, normalize=True).eval()
    student.eval(), ctc.eval()
    wave = torch.randn(2, 5 * 16_000)
    mask = torch.ones_like(wave, dtype=torch.long)
    mask[1, 3 * 16_000 :] = 0
    wave[1, 3 * 16_000 :] = 0

    def outputs(x, m) -> dict:
        logits = ctc(x, attention_mask=m).logits
        real = ctc.frame_attention_mask(m, logits.shape[1])  # padded frames hold a blank of finfo.min: left out
        return {
            "targets": targets_fn(x, m)[0],  # the teacher runs under bf16 autocast on a GPU in both rows
            "predictions": student(x, attention_mask=m).predictions,
            "ctc_logits": logits[real],
        }

    with torch.no_grad():
        reference = outputs(wave, mask)
    report = {"device": str(device), "name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    targets_fn.to(device), student.to(device), ctc.to(device)
    x, m = wave.to(device), mask.to(device)
    for dtype in ("fp32", "bf16"):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            got = outputs(x, m)
        report[dtype] = {name: round(cosine(got[name].cpu(), reference[name]), 6) for name in reference}
        same = (got["ctc_logits"].argmax(-1).cpu() == reference["ctc_logits"].argmax(-1)).float().mean().item()
        report[dtype]["ctc_argmax_agreement"] = round(same, 4)
    student.train(), ctc.train()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        targets, teacher_cnn, _ = targets_fn(x, m)
        loss = student_distillation_loss(student(x, attention_mask=m), targets, teacher_cnn, 1.0, 0.0)[0]
        ctc_loss = ctc(x, attention_mask=m, labels=torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]], device=device)).loss
    (loss + ctc_loss).backward()
    grads_finite = all(torch.isfinite(p.grad).all().item() for p in student.parameters() if p.grad is not None)
    report["train_step"] = {
        "distill_loss": round(loss.item(), 4),
        "ctc_loss": round(ctc_loss.item(), 4),
        "ctc_loss_dtype": str(ctc_loss.dtype),
        "gradients_finite": grads_finite,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        write_results(args.json, report)


if __name__ == "__main__":
    main()

"""DistilXLSRForSequenceClassification: the SUPERB head (weighted layer sum, masked mean pooling), through
save_for_hub -> a fresh process's AutoModelForAudioClassification and audio-classification pipeline, and the plain
wav2vec2 export."""

import numpy as np
import pytest
import torch
from conftest import run_fresh_python, tiny_student_config

from modeling_distilxlsr import DistilXLSRForSequenceClassification, DistilXLSRModel
from modeling_distilxlsr.export.wav2vec2 import export_as_wav2vec2
from modeling_distilxlsr.models.folder import save_for_hub

LABELS = {0: "sim", 1: "não", 2: "parar"}


def classifier(**overrides):
    torch.manual_seed(0)
    config = tiny_student_config(
        use_weighted_layer_sum=True,
        classifier_proj_size=16,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return DistilXLSRForSequenceClassification(config).eval()


def test_a_padded_batch_gives_each_utterance_its_own_logits():
    model = classifier()
    waves = [torch.randn(16000), torch.randn(7000), torch.randn(11000)]
    batch = torch.zeros(3, 16000)
    mask = torch.zeros(3, 16000, dtype=torch.long)
    for i, wave in enumerate(waves):
        batch[i, : len(wave)], mask[i, : len(wave)] = wave, 1
    with torch.no_grad():
        padded = model(batch, attention_mask=mask).logits
        alone = torch.cat([model(w[None]).logits for w in waves])
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


def test_the_layer_weights_train_and_a_frozen_encoder_trains_only_the_head():
    model = classifier().train()
    model.freeze_base_model()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer_weights", "projector.weight", "projector.bias", "classifier.weight", "classifier.bias"}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    before = model.layer_weights.detach().clone()
    loss = model(torch.randn(2, 8000), labels=torch.tensor([0, 2])).loss
    loss.backward()
    optimizer.step()
    assert model.layer_weights.grad.abs().sum() > 0 and not torch.equal(before, model.layer_weights)
    with pytest.raises(ValueError, match="Labels must be in"):
        model(torch.randn(1, 8000), labels=torch.tensor([3]))


def test_a_frozen_probe_learns_three_tones_above_chance():
    """A tiny 3-class set (tones at three pitches, random phase and level): the frozen random encoder + trained head
    separates them on held-out clips, far above chance (1/3; 18 of 30 right by chance: p < 0.001)."""
    rng = np.random.default_rng(0)

    def clips(count):
        waves, labels = [], []
        for i in range(count):
            label = i % 3
            t = np.arange(8000) / 16000
            tone = np.sin(2 * np.pi * (200 * 4**label) * t + rng.uniform(0, 6.3)) * rng.uniform(0.2, 1.0)
            waves.append(tone + 0.05 * rng.standard_normal(8000))
            labels.append(label)
        waves = np.stack(waves)
        waves = (waves - waves.mean(1, keepdims=True)) / waves.std(1, keepdims=True)
        return torch.tensor(waves, dtype=torch.float32), torch.tensor(labels)

    model = classifier().train()
    model.freeze_base_model()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    train_x, train_y = clips(48)
    for _ in range(100):
        optimizer.zero_grad()
        model(train_x, labels=train_y).loss.backward()
        optimizer.step()
    test_x, test_y = clips(30)
    with torch.no_grad():
        accuracy = (model.eval()(test_x).logits.argmax(-1) == test_y).float().mean().item()
    assert accuracy >= 0.6, accuracy


@pytest.mark.slow
def test_a_distilled_folder_loads_as_an_audio_classifier_and_runs_the_pipeline_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    backbone_dir, classifier_dir = tmp_path / "distilled", tmp_path / "classifier"
    save_for_hub(DistilXLSRModel(tiny_student_config()), backbone_dir)
    model = classifier()
    save_for_hub(model, classifier_dir)
    wave = torch.randn(12000)
    with torch.no_grad():
        expected = torch.softmax(model(wave[None]).logits, -1)[0]
    np.save(tmp_path / "wave.npy", wave.numpy())
    out = run_fresh_python(
        f"""
        import json, sys, numpy as np
        from transformers import AutoModelForAudioClassification, pipeline
        head = AutoModelForAudioClassification.from_pretrained(
            {str(backbone_dir)!r}, trust_remote_code=True, num_labels=4)
        assert type(head).__name__ == "DistilXLSRForSequenceClassification" and head.config.num_labels == 4
        clf = pipeline("audio-classification", model={str(classifier_dir)!r}, trust_remote_code=True)
        assert sys.modules.get("modeling_distilxlsr") is None
        print(json.dumps(clf(np.load({str(tmp_path / "wave.npy")!r}), top_k=3)))
        """,
        cwd=tmp_path,
    )
    import json

    scores = {row["label"]: row["score"] for row in json.loads(out.strip().splitlines()[-1])}
    assert set(scores) == set(LABELS.values())
    assert scores == pytest.approx({LABELS[i]: expected[i].item() for i in range(3)}, abs=1e-4)


def test_export_as_a_plain_wav2vec2_classifier_gives_the_same_logits(tmp_path):
    from transformers import Wav2Vec2ForSequenceClassification

    model = classifier()
    save_for_hub(model, tmp_path / "ours")
    export_as_wav2vec2(str(tmp_path / "ours"), str(tmp_path / "plain"))
    plain = Wav2Vec2ForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    assert plain.config.id2label == LABELS
    wave = torch.randn(1, 12000)
    with torch.no_grad():
        torch.testing.assert_close(plain(wave).logits, model(wave).logits, atol=1e-4, rtol=1e-4)


def test_layer_weights_start_equal_from_a_base_folder_and_are_kept_when_saved(tmp_path):
    """transformers leaves `layer_weights` as uninitialised memory when a classifier loads from a base checkpoint
    (values like 1e31, different every run); ours start equal, and trained ones survive a save and load."""
    save_for_hub(DistilXLSRModel(tiny_student_config()), tmp_path / "base")
    for _ in range(2):
        fresh = DistilXLSRForSequenceClassification.from_pretrained(
            tmp_path / "base", num_labels=3, use_weighted_layer_sum=True
        )
        torch.testing.assert_close(fresh.layer_weights.data, torch.full((3,), 1 / 3))
    trained = classifier()
    with torch.no_grad():
        trained.layer_weights.copy_(torch.tensor([0.1, -2.0, 3.0]))
    save_for_hub(trained, tmp_path / "trained")
    reloaded = DistilXLSRForSequenceClassification.from_pretrained(tmp_path / "trained")
    torch.testing.assert_close(reloaded.layer_weights.data, torch.tensor([0.1, -2.0, 3.0]))

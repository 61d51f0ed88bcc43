"""Trains the punctuation and capitals restorer shipped in `modeling_distilxlsr/text/punctuation_pt_br/`.

    python tools/train_punctuation.py --output_dir modeling_distilxlsr/text/punctuation_pt_br --minutes 22

One readable loop: text -> windows of the lowercase, unmarked words a CTC model writes -> a word-level BERT token
classifier (`BertForTokenClassification`, one label a word) -> the folder (model in fp16, tokenizer, args, scores)
and its card. Windows are consecutive sentences of one document, 8-96 words, most starting at a sentence start (as
speech regions do). Questions and exclamations are rare in manuals, so the gettext
questions and the corpus' own train sentences are drawn more often than their share. Scored at the end on the held-out
fortunes-br and on the corpus test sentences (see `punctuation_text.py` for the sources)."""

import argparse
import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from punctuation_text import fortunes_br, training_documents
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

from modeling_distilxlsr.corpus.synthesis import load_sentences, sentence_split
from modeling_distilxlsr.text.punctuation import LABELS, MARKS, WINDOW_WORDS, PunctuationRestorer, labelled_words
from modeling_distilxlsr.text.punctuation_scores import punctuation_scores

# How often a window is drawn from each source (the rest of the mass goes to the manuals by their size).
SOURCE_WEIGHTS = {"gettext-pt-br": 0.12, "corpus-train": 0.18}


@dataclass
class ModelArguments:
    hidden_size: int = 160
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 480


@dataclass
class TrainingArguments:
    output_dir: str = "modeling_distilxlsr/text/punctuation_pt_br"
    minutes: float = 22.0
    max_steps: int = 100_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    seed: int = 0
    min_words: int = 8
    vocabulary_size: int = 12_000
    mark_weight: float = 2.0  # marks are rare (a comma on ~5% of words): their labels weigh this much more in the loss
    threads: int = 2


def parse_args() -> tuple[ModelArguments, TrainingArguments]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for group in (ModelArguments(), TrainingArguments()):
        for name, value in asdict(group).items():
            parser.add_argument(f"--{name}", type=type(value), default=value)
    args = vars(parser.parse_args())
    return (ModelArguments(**{k: args[k] for k in asdict(ModelArguments())}),
            TrainingArguments(**{k: args[k] for k in asdict(TrainingArguments())}))  # fmt: skip


def corpus_documents() -> tuple[list[list[str]], list[str]]:
    """The corpus' train+dev sentences as documents of 1-4 sentences, and its test sentences (held out)."""
    sentences = load_sentences()
    test, dev, train = sentence_split()
    rng = random.Random(0)
    pool = [sentences[i] for i in list(train) + list(dev)]
    rng.shuffle(pool)
    documents, k = [], 0
    while k < len(pool):
        n = rng.randint(1, 4)
        documents.append(pool[k : k + n])
        k += n
    return documents, [sentences[i] for i in test]


class WindowSampler:
    """Random training windows: (words, label ids)."""

    def __init__(self, sources: dict[str, list[list[str]]], min_words: int, seed: int):
        self.rng = random.Random(seed)
        self.sources = {k: docs for k, v in sources.items() if (docs := [d for d in v if d])}
        sizes = {k: sum(len(d) for d in v) for k, v in self.sources.items()}
        manuals = {k: n for k, n in sizes.items() if k not in SOURCE_WEIGHTS}
        fixed = {k: w for k, w in SOURCE_WEIGHTS.items() if k in self.sources}
        rest = 1.0 - sum(fixed.values())
        self.weights = {**{k: rest * n / sum(manuals.values()) for k, n in manuals.items()}, **fixed}
        self.min_words = min_words

    def window(self) -> tuple[list[str], list[int]]:
        source = self.rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        document = self.rng.choice(self.sources[source])
        first = self.rng.randrange(len(document))
        target = self.rng.randint(self.min_words, WINDOW_WORDS)
        words = []
        for sentence in document[first:]:
            words += labelled_words(sentence)
            if len(words) >= target:
                break
        if self.rng.random() < 0.2 and len(words) > 3:  # a region that starts mid-sentence
            words = words[self.rng.randrange(1, len(words) // 2 + 1) :]
        words = words[:WINDOW_WORDS]
        return [w.word for w in words], [LABELS.index(w.label) for w in words]


def word_tokenizer(sources: dict[str, list[list[str]]], size: int) -> PreTrainedTokenizerFast:
    """The `size` most frequent words (as `labelled_words` writes them) as a `tokenizers` word-level vocabulary."""
    counts = Counter(w.word for docs in sources.values() for d in docs for s in d for w in labelled_words(s))
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for word, _ in counts.most_common(size):
        vocab[word] = len(vocab)
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


def batch_tensors(windows, tokenizer) -> dict[str, torch.Tensor]:
    length = max(len(words) for words, _ in windows)
    ids = torch.full((len(windows), length), tokenizer.pad_token_id)
    labels = torch.full((len(windows), length), -100)
    for row, (words, targets) in enumerate(windows):
        encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
        ids[row, : len(words)] = torch.tensor(encoded)
        labels[row, : len(words)] = torch.tensor(targets)
    return {"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": labels}


def build_model(model_args: ModelArguments, vocab_size: int) -> BertForTokenClassification:
    config = BertConfig(
        vocab_size=vocab_size, max_position_embeddings=WINDOW_WORDS, type_vocab_size=1, pad_token_id=0,
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)},
        **asdict(model_args),
    )  # fmt: skip
    return BertForTokenClassification(config)


def learning_rate(step: int, args: TrainingArguments, total: int) -> float:
    if step < args.warmup_steps:
        return args.learning_rate * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, total - args.warmup_steps))
    return args.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def main():
    model_args, args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    # 1. text
    sources = training_documents()
    corpus_train, corpus_test = corpus_documents()
    sources["corpus-train"] = corpus_train
    held_out = fortunes_br()
    for name, docs in sources.items():  # a package that is not installed reads as none: said, never silent
        print(f"{name}: {len(docs)} documents, {sum(len(d) for d in docs)} sentences")

    # 2. tokenizer and model
    tokenizer = word_tokenizer(sources, args.vocabulary_size)
    model = build_model(model_args, len(tokenizer))
    weights = torch.tensor([args.mark_weight if label.endswith(MARKS[1:]) else 1.0 for label in LABELS])
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    sampler = WindowSampler(sources, args.min_words, args.seed)

    # 3. the loop: until the time budget (the schedule is set from the speed of the first steps)
    start, step, total, losses = time.time(), 0, args.max_steps, []
    model.train()
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args, total)
        batch = batch_tensors([sampler.window() for _ in range(args.batch_size)], tokenizer)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step == 50:
            per_step = (time.time() - start) / step
            total = min(args.max_steps, int(args.minutes * 60 / per_step))
            print(f"{per_step:.2f} s a step: {total} steps in {args.minutes} min")
        if step % 200 == 0:
            print(f"step {step}/{total} loss {np.mean(losses[-200:]):.4f} ({time.time() - start:.0f} s)", flush=True)

    # 4. the folder: fp16 weights (half the size; the restorer computes in fp32), tokenizer, arguments
    model.eval().half().save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "training_args.json").write_text(
        json.dumps(
            {
                "model": asdict(model_args),
                "training": asdict(args),
                "steps": step,
                "minutes": round((time.time() - start) / 60, 1),
                "sources": {k: len(v) for k, v in sources.items()},
                "source_weights": sampler.weights,
            },
            indent=1,
        )  # fmt: skip
    )

    # 5. scores on text none of the training used, and the card
    score_and_card(out, model, sources, held_out, corpus_test, step, args)


def score_and_card(out: Path, model, sources, held_out, corpus_test, steps: int, args: TrainingArguments) -> dict:
    restorer = PunctuationRestorer(out)
    scores = {"corpus-test": punctuation_scores(corpus_test, restorer)}
    if held_out:
        scores = {"fortunes-br": punctuation_scores([" ".join(d) for d in held_out], restorer), **scores}
    else:
        print("note: no fortunes-br here (apt install fortunes-br): scored on the corpus test sentences only")
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    (out / "README.md").write_text(model_card(model, sources, scores, steps, args))
    print(json.dumps(scores, indent=1))
    return scores


def _score_rows(scores: dict) -> str:
    rows = []
    for name, s in scores.items():
        cells = [name, s["words_scored"], *(f"{s[m]['f1']:.3f} ({s[m]['support']})" for m in (".", ",", "?", "!")),
                 f"{s['capital']['f1']:.3f}", f"{s['sentence_initial_capitals']:.3f}"]  # fmt: skip
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def model_card(model, sources: dict, scores: dict, steps: int, args: TrainingArguments) -> str:
    """The folder's card: what it is, how it was trained, how it scores on text it never read, its limits."""
    params = sum(p.numel() for p in model.parameters()) / 1e6
    source_lines = "\n".join(f"- `{k}`: {len(v)} documents, {sum(len(d) for d in v)} sentences"
                              for k, v in sources.items())  # fmt: skip
    return f"""---
language: pt
license: apache-2.0
library_name: transformers
pipeline_tag: token-classification
tags: [punctuation, truecasing, brazilian-portuguese, distilxlsr]
---
# Punctuation and capitals for Brazilian Portuguese ASR output

A word-level BERT token classifier ({params:.2f}M parameters, fp16 weights; {len(LABELS)} labels) that writes a CTC
model's lowercase, unmarked words as sentences: each word gets its case (lower, Capital, UPPER) and the mark after it
(none `.` `,` `?` `!`). DistilXLSR applies it by default after written numbers (`--raw_text` turns both off).
It loads with plain transformers (`BertForTokenClassification`, `PreTrainedTokenizerFast` with a word-level
vocabulary of the {args.vocabulary_size:,} most frequent training words; others read as `[UNK]`);
`modeling_distilxlsr.text.punctuation.PunctuationRestorer` runs it (windows of {WINDOW_WORDS} words).

## Training

`python tools/train_punctuation.py` ({steps} steps of {args.batch_size} windows, {args.minutes:g} min on 2 CPU
cores; seed {args.seed}; mark labels weighted {args.mark_weight:g} in the loss). Windows of
{args.min_words}-{WINDOW_WORDS} words of consecutive sentences, lowercased and stripped of marks as a CTC model writes
them. Text, all of it shipped by Debian (read at training time, not redistributed):
{source_lines}

Manuals ask few questions, so the gettext messages and the corpus' train sentences are drawn more often than their
share (`SOURCE_WEIGHTS`).

## Scores on text none of the training used

F1 per mark (support in brackets), capitals F1 over all words, and the share of sentence-initial words written with a
capital. `fortunes-br`: the Brazilian fortunes (jokes, dialogue; `/usr/share/games/fortunes/brasil`), each fortune
as one text. `corpus-test`: the corpus' 100 test sentences, each on its own (the ones the test audio speaks).

| text | words | . | , | ? | ! | capitals | sentence-initial capitals |
|---|---:|---:|---:|---:|---:|---:|---:|
{_score_rows(scores)}

## Bias, Risks, and Limitations

- Trained mostly on software manuals (LibreOffice and GIMP help, Debian guides; the Debian Reference is partly
  European Portuguese): conversation, names and registers the manuals lack are where it errs most.
- A yes/no question reads in Portuguese exactly as a statement ("você já almoçou"): without the voice's pitch, which
  this text-only model never hears, such questions mostly get a period. Questions with a question word (onde, quando,
  qual, como, por que...) are the ones it marks.
- Proper nouns are capitalised only when the manuals' text taught it the name; a name outside its vocabulary is
  guessed from its neighbours only.
- It never changes, adds or removes a word; on a wrong transcript it punctuates the wrong words.
"""


if __name__ == "__main__":
    main()

"""Model cards in the Hub's format: YAML metadata from `huggingface_hub.ModelCardData`, the body rendered from a
`model_card/` template with a run's facts."""

import importlib.resources
import os
import re
import string

from huggingface_hub import ModelCard, ModelCardData

# The templates are the repository's `model_card/` folder; a wheel installs the same files as the package data
# `modeling_distilxlsr.model_card` (pyproject.toml maps the folder there), where a checkout has none.
CHECKOUT_TEMPLATES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "model_card"
)


def template_path(name: str) -> str:
    checkout = os.path.join(CHECKOUT_TEMPLATES, name)
    if os.path.exists(checkout):
        return checkout
    return str(importlib.resources.files("modeling_distilxlsr.model_card") / name)


def render_card(template_name: str, out_dir: str, card_data, **facts) -> str:
    """Writes `out_dir/README.md`: the Hub's YAML metadata from `card_data` (a `huggingface_hub.ModelCardData`:
    license, language, tags, base_model, datasets, metrics, and `model-index` eval results), then the body from
    `model_card/<template_name>`, every $field of which must be given."""

    with open(template_path(template_name), encoding="utf-8") as f:
        body = string.Template(f.read()).substitute({key: str(value) for key, value in facts.items()})
    path = os.path.join(out_dir, "README.md")
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(path)
    return path


def hub_id_or_none(name_or_path: str | None) -> str | None:
    """`name_or_path` when it names a Hub repo (`user/name`), None for a local folder or file: the card's metadata
    never carries a path of the machine that trained the model."""
    if not name_or_path or os.path.exists(name_or_path) or os.path.isabs(name_or_path):
        return None
    return name_or_path if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) else None


def readable_dataset_name(spec: str) -> str:
    """A data source as a card names it: a Hub id as is; a local folder or manifest by its last two path parts
    (`corpus-pt-br-v2/test`, `cv-pt/dev.tsv`), never the absolute path."""
    if hub_id_or_none(spec):
        return spec
    parts = os.path.normpath(str(spec)).split(os.sep)
    return "/".join(p for p in parts[-2:] if p)


BUILTIN_CORPUS = "the project's synthetic pt-BR corpus"


def train_data_name(train_data: str | None) -> str:
    return readable_dataset_name(train_data) if train_data else BUILTIN_CORPUS


def card_metadata(train_data: str | None, base_model: str | None, pipeline_tag: str, tags: list[str], **fields):
    """The Hub metadata every DistilXLSR card shares (pt, apache-2.0, transformers), the training data as `datasets`
    (readable names) and `base_model` only when it is a Hub id; `fields` adds to it (metrics, model-index)."""

    return ModelCardData(
        language="pt",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["speech", "audio", "wav2vec2", "distilxlsr", *tags],
        base_model=hub_id_or_none(base_model),
        datasets=[readable_dataset_name(train_data)] if train_data else None,
        **fields,
    )


def format_params(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def card_repo_id(hub_model_id: str | None, output_dir: str) -> str:
    """What a card's usage snippet loads: the Hub id, else the output folder as the user gave it when relative, else
    its own name: an absolute path names a folder of the machine that wrote the card, nobody else's."""
    if hub_model_id:
        return hub_model_id
    return output_dir if not os.path.isabs(output_dir) else os.path.basename(os.path.normpath(output_dir))

"""Model cards rendered from `model_card/` templates with a run's facts, training curves, and the Hub upload."""

import os
import re
import string

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_card")


def render_card(template_name: str, out_dir: str, card_data, **facts) -> str:
    """Writes `out_dir/README.md`: the Hub's YAML metadata from `card_data` (a `huggingface_hub.ModelCardData`:
    license, language, tags, base_model, datasets, metrics, and `model-index` eval results), then the body from
    `model_card/<template_name>`, every $field of which must be given."""
    from huggingface_hub import ModelCard

    with open(os.path.join(TEMPLATE_DIR, template_name), encoding="utf-8") as f:
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


def format_params(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def plot_curves(history: list[dict], out_dir: str, series: dict[str, list[str]]) -> list[str]:
    """One PNG per entry of `series` ({file name: [history keys]}), step on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for file_name, keys in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in keys:
            points = [(row["step"], row[key]) for row in history if key in row]
            if points:
                ax.plot(*zip(*points, strict=True), label=key, marker="." if len(points) < 30 else None)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, file_name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def check_hub_access(repo_id: str | None) -> str:
    """Fails before any training if a push at the end could not happen: no repo id, no token, a Hub that cannot be
    reached (offline machine, `HF_HUB_OFFLINE`) or a token it rejects."""
    from huggingface_hub import HfApi, get_token

    if not repo_id:
        raise ValueError("--push_to_hub needs --hub_model_id user/name.")
    token = get_token()
    if token is None:
        raise ValueError(
            "--push_to_hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN, or drop --push_to_hub "
            "and upload the output folder later."
        )
    try:
        HfApi(token=token).whoami()
    except Exception as err:  # offline mode, network and HTTP errors all mean "no push"
        raise ValueError(
            f"--push_to_hub: cannot reach the Hugging Face Hub with this token ({type(err).__name__}: {err}). "
            "Check the network and the token (`hf auth whoami`), or drop --push_to_hub and upload the output folder "
            "later with `hf upload`."
        ) from err
    return token


def push_folder(folder: str, repo_id: str, commit_message: str) -> str:
    """Uploads `folder` in one commit. A repo this call created is deleted again if the upload fails, so a failed
    push never leaves a half-made repo behind."""
    from huggingface_hub import HfApi

    api = HfApi(token=check_hub_access(repo_id))
    existed = api.repo_exists(repo_id)
    url = api.create_repo(repo_id, exist_ok=True)
    try:
        api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=commit_message)
    except Exception:
        if not existed:
            api.delete_repo(repo_id)
        raise
    return str(url)

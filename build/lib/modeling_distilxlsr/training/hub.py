from huggingface_hub import HfApi, get_token

"""Uploading an output folder to the Hugging Face Hub, checked before training so a run never ends unable to push."""


def check_hub_access(repo_id: str | None) -> str:
    """Fails before any training if a push at the end could not happen: no repo id, no token, a Hub that cannot be
    reached (offline machine, `HF_HUB_OFFLINE`) or a token it rejects."""

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

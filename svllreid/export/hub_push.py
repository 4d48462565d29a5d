"""``svllreid push``: a trained model's folder (:func:`svllreid.export.pretrained.save_pretrained`) uploaded
to the Hugging Face Hub with huggingface_hub, then loadable anywhere as ``hf-hub:ORG/NAME``."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from svllreid.errors import ExportError
from svllreid.export.pretrained import SavedModel, save_pretrained
from svllreid.inference.model_folder import HUB_PREFIX, check_repo_id, first_line

__all__ = ["Pushed", "push_to_hub"]


@dataclass
class Pushed:
    repo: str
    commit: str | None
    url: str
    folder: SavedModel

    @property
    def name(self) -> str:
        """The model's ``hf-hub:`` name, pinned to the commit just made."""
        return f"{HUB_PREFIX}{self.repo}" + (f"@{self.commit}" if self.commit else "")


def _token(token: str | None) -> str:
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise ExportError(
            "pushing to the Hugging Face Hub needs a token with write access, and none was found: run "
            "'hf auth login', or set HF_TOKEN, or pass --token (make one at https://huggingface.co/settings/tokens)"
        )
    return found


def push_to_hub(
    source: str | Path,
    repo: str,
    *,
    token: str | None = None,
    private: bool = False,
    identities: bool = False,
    license: str | None = None,
    message: str | None = None,
) -> Pushed:
    """Save ``source`` (a run, checkpoint or model folder) as a model folder and upload it to ``repo``
    (``ORG/NAME``, created if missing).

    Raises:
        CheckpointError: a malformed repository name.
        ExportError: no token, or an upload the Hub refused.
    """
    check_repo_id(repo, f"--repo {repo!r}")
    secret = _token(token)
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="svllreid-push-") as staging:
        saved = save_pretrained(
            source,
            Path(staging) / repo.split("/")[1],
            identities=identities,
            license=license,
            name=repo,
            load_as=f"{HUB_PREFIX}{repo}",
        )
        api = HfApi(token=secret)
        try:
            api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo,
                repo_type="model",
                folder_path=str(saved.folder),
                commit_message=message or f"svllreid {saved.config['svllreid_version']}: {saved.config['name']}",
            )
        except Exception as err:  # HTTP errors: a bad token, no write access, the Hub unreachable
            raise ExportError(
                f"the Hub refused the upload to {repo} ({type(err).__name__}: {first_line(err)}); check the "
                "token's write access and the repository name"
            ) from None
    commit = getattr(info, "oid", None)
    url = str(getattr(info, "commit_url", "") or f"https://huggingface.co/{repo}")
    return Pushed(repo, commit, url, saved)

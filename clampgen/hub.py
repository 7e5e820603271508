"""Files from the Hugging Face Hub through huggingface_hub, offline-first and in one line when
they cannot be had.

    path = hub_download("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", ["open_clip_model.safetensors",
                        "open_clip_pytorch_model.bin"], "weights ViT-B-32/laion2b are", advice)

huggingface_hub's settings apply as they do everywhere: HF_ENDPOINT (a mirror), HF_HUB_OFFLINE,
HF_HOME / HF_HUB_CACHE (where files are cached), HF_TOKEN, HF_HUB_ETAG_TIMEOUT, HTTPS_PROXY /
NO_PROXY. A cached file is used without any network call. Otherwise one metadata request (HEAD,
short timeout, no retries) asks the endpoint for the file first, because hf_hub_download,
finding no cached file after a failed HEAD, retries for up to a minute; an unreachable endpoint
is WeightsUnavailable in seconds. Then hf_hub_download fetches the file into the cache with its
own progress bar.
"""

import logging
import os

import open_clip

log = logging.getLogger(__name__)

HUB_TIMEOUT = 5.0  # seconds for the metadata request, unless HF_HUB_ETAG_TIMEOUT says otherwise


class WeightsUnavailable(RuntimeError):
    """Pretrained weights can be neither found locally nor downloaded."""


def cached_file(repo: str, names: list):
    """Local path of the first of `names` in the Hugging Face cache's copy of repo, else None.
    No network."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        path = try_to_load_from_cache(repo, name)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def hub_timeout() -> float:
    """Seconds the metadata request may take: HF_HUB_ETAG_TIMEOUT when it is set, else
    HUB_TIMEOUT (huggingface_hub's own default, 10 s, is the wait before its minute of retries)."""
    from huggingface_hub import constants

    if constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT:
        return float(constants.HF_HUB_ETAG_TIMEOUT)
    return HUB_TIMEOUT


def one_line(e: Exception) -> str:
    """'TypeName: the first line of its message' (200 characters at most)."""
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def ask_hub(repo: str, names: list) -> tuple:
    """(name, '') for the first of `names` that the endpoint (HF_ENDPOINT) has in `repo`, or
    (None, why not: one line). One HEAD request per name with hub_timeout() and no retries
    (get_hf_file_metadata's default), through huggingface_hub's session: its proxies, token
    and offline mode apply. No request at all under HF_HUB_OFFLINE."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return None, "HF_HUB_OFFLINE is set"
    endpoint, missing = constants.ENDPOINT, []
    for name in names:
        url = hf_hub_url(repo, name)
        try:
            meta = get_hf_file_metadata(url, timeout=hub_timeout())
        except HfHubHTTPError as e:
            status = getattr(e.response, "status_code", None)
            if status == 404 and e.response.headers.get("X-Error-Code") == "RepoNotFound":
                return None, f"{endpoint} has no repository {repo}"
            if status == 404:
                missing.append(name)
                continue
            private = " (gated or private: set HF_TOKEN)" if status in (401, 403) else ""
            return None, f"{endpoint} answered HTTP {status} for {url}{private}"
        except Exception as e:  # noqa: BLE001 -- transport errors: requests', httpx' or httpx2's
            return (
                None,
                f"{endpoint} could not be reached ({one_line(e)}; timeout {hub_timeout():g} s)",
            )
        if not (meta.commit_hash and meta.etag):
            return (
                None,
                f"{endpoint} does not answer like a Hugging Face Hub "
                f"(no X-Repo-Commit or ETag for {url})",
            )
        return name, ""
    return None, f"{endpoint}/{repo} has no {' or '.join(missing)}"


def hub_download(repo: str, names: list, missing: str, advice: str) -> str:
    """Local path of the first of `names` in repo: the cached file, or one that hf_hub_download
    fetches now (with its progress bar) after ask_hub found it, with the request open_clip
    itself would make. WeightsUnavailable in one line ('{missing} not in the Hugging Face cache
    (where) and why: {advice}') when neither works."""
    path = cached_file(repo, names)
    if path:
        return path
    from huggingface_hub import constants, hf_hub_download

    name, problem = ask_hub(repo, names)
    if name is None:
        raise WeightsUnavailable(
            f"{missing} not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {problem}: "
            f"{advice}"
        )
    log.info(f"downloading {repo}/{name} from {constants.ENDPOINT} to {constants.HF_HUB_CACHE}")
    try:
        return hf_hub_download(
            repo,
            name,
            etag_timeout=hub_timeout(),
            library_name="open_clip",
            library_version=open_clip.__version__,
        )
    except Exception as e:  # noqa: BLE001 -- the transport's errors, as in ask_hub
        raise WeightsUnavailable(
            f"downloading {repo}/{name} from {constants.ENDPOINT} failed ({one_line(e)}): {advice}"
        ) from None

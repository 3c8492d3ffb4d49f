"""LLaVA-OneVision through transformers: the exact video tokens its LLM sees, and answers from any
(compressed or full) token sequence.

:meth:`LlavaOnevisionBackend.encode` returns the (T, 196, d) tokens the stock model feeds its LLM
(SigLIP -> projector -> bilinear 27->14 pooling, without the image_newline);
:meth:`LlavaOnevisionBackend.answer` generates with the model patched by
:func:`scissor_viz.apply_patch` (at load, retention 1: stock unless tokens are given), passing K
given tokens as ``video_tokens=``: the patch puts them + the image_newline where the prompt's
``<video>`` was. The app's answers are thus the library's. docs/models.md describes the stock
pipeline this reproduces; docs/patch.md the patch.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image

from scissor_viz.grid import TokenGrid
from scissor_viz.models.attention import (
    batch_within_budget,
    capture_attention,
    check_attention_budget,
    decoder_of,
    fastv_scores,
    last_vision_attention,
)
from scissor_viz.models.base import Answer, Backend, BackendLoadError, check_frames
from scissor_viz.models.cache import TokenCache
from scissor_viz.patch import ScissorState, VideoTokens, apply_patch
from scissor_viz.progress import ProgressFn, report

DEFAULT_CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
DEVICE_ENV = "SCISSOR_VIZ_DEVICE"
DTYPE_ENV = "SCISSOR_VIZ_DTYPE"
RANDOM_WEIGHTS_FLAG = "scissor_viz_random_weights"  # set in config.json by test/benchmark builders
PREPROCESSING_FILES = (
    "video_preprocessor_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)
FALLBACK_TEMPLATE = "<|im_start|>user\n{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"
_FIX_HINT = (
    "How to fix: connect to the internet once so the checkpoint can be downloaded into the "
    "Hugging Face cache; or set HF_HOME to a cache that already holds it; or pass a local folder "
    "(one written by save_pretrained or `hf download`) as the checkpoint, or put that folder or "
    "another LLaVA-OneVision id in the SCISSOR_VIZ_CHECKPOINT environment variable."
)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The argument, else ``$SCISSOR_VIZ_DEVICE``, else CUDA when present, else CPU."""
    device = device or os.environ.get(DEVICE_ENV)
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_dtype(device: torch.device) -> torch.dtype:
    """``$SCISSOR_VIZ_DTYPE`` if set, else bf16 on CUDA when supported (else fp16), float32 on
    CPU. (bf16 on a CPU with AVX-512 BF16 encodes ~2-3x faster, but its tokens differ from
    float32's by ~1e-2 relative: opt in with SCISSOR_VIZ_DTYPE=bfloat16.)"""
    name = os.environ.get(DTYPE_ENV, "").strip().lower()
    if name:
        if name not in _DTYPES:
            raise ValueError(f"{DTYPE_ENV}={name!r}: use one of {', '.join(_DTYPES)}")
        return _DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ----------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class VideoPreprocessing:
    """Per-frame preprocessing from a checkpoint's (video) preprocessor config.

    Matches ``LlavaOnevisionImageProcessorPil`` on the whole-image view: PIL resize to
    (height, width) with the config's resample filter, ``* rescale_factor`` (in float64, then
    float32), ``(x - mean) / std`` in float32.
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    resample: int = 3  # PIL bicubic
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    source: str = ""

    @classmethod
    def from_config(cls, cfg: dict, source: str = "") -> VideoPreprocessing:
        missing = [k for k in ("image_mean", "image_std") if cfg.get(k) is None]
        if missing and cfg.get("do_normalize", True):
            raise ValueError(f"{source or 'preprocessor config'} has no {' / '.join(missing)}")
        size = cfg.get("size") or {}
        if isinstance(size, int):
            height = width = size
        elif "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        elif "shortest_edge" in size:
            height = width = int(size["shortest_edge"])
        else:
            raise ValueError(f"{source or 'preprocessor config'}: unsupported size {size!r}")

        def triple(v) -> tuple[float, float, float]:
            v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3)]
            return (v[0], v[1], v[2])

        return cls(
            height=height,
            width=width,
            mean=triple(cfg.get("image_mean", 0.0)),
            std=triple(cfg.get("image_std", 1.0)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            resample=int(cfg.get("resample", 3)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            source=source,
        )

    @cached_property
    def table(self) -> np.ndarray:
        """(3, 256) float32: each channel's output for each uint8 input value, computed exactly
        as the image processor computes it (x * rescale_factor in float64, cast to float32, then
        (x - mean) / std in float32) -- a lookup is bit-identical to the arithmetic and faster."""
        x = np.arange(256, dtype=np.float64)
        x = (x * self.rescale_factor if self.do_rescale else x).astype(np.float32)
        if not self.do_normalize:
            return np.stack([x, x, x])
        return np.stack([(x - np.float32(m)) / np.float32(s) for m, s in zip(self.mean, self.std)])

    def frame(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, height, width) float32."""
        if self.do_resize and frame.shape[:2] != (self.height, self.width):
            img = Image.fromarray(frame).resize((self.width, self.height), resample=self.resample)
            frame = np.asarray(img)
        table = self.table
        return np.stack([table[c][frame[..., c]] for c in range(3)])

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, height, width) float32 tensor."""
        return torch.from_numpy(np.stack([self.frame(f) for f in check_frames(frames)]))


def _read_json(path: str | None) -> dict | None:
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _resolve_file(checkpoint: str, name: str, local_files_only: bool) -> str | None:
    if os.path.isdir(checkpoint):
        path = os.path.join(checkpoint, name)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    return cached_file(
        checkpoint,
        name,
        local_files_only=local_files_only,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def load_preprocessing(checkpoint: str, local_files_only: bool = True) -> VideoPreprocessing:
    """The checkpoint's own video preprocessing (video config, else image config, else the
    processor config's nested one). Never the processor classes' defaults: raises if none."""
    for name in PREPROCESSING_FILES:
        cfg = _read_json(_resolve_file(checkpoint, name, local_files_only))
        if cfg is None:
            continue
        if name == "processor_config.json":
            cfg = cfg.get("video_processor") or cfg.get("image_processor")
            if not isinstance(cfg, dict):
                continue
        return VideoPreprocessing.from_config(cfg, source=f"{checkpoint}/{name}")
    raise ValueError(
        f"{checkpoint} has no preprocessing config ({', '.join(PREPROCESSING_FILES)}); "
        "refusing to guess the normalisation"
    )


def _load_chat_template(checkpoint: str, tokenizer, local_files_only: bool) -> str | None:
    """The processor's chat template (chat_template.json / .jinja), else the tokenizer's."""
    data = _read_json(_resolve_file(checkpoint, "chat_template.json", local_files_only))
    if data and isinstance(data.get("chat_template"), str):
        return data["chat_template"]
    path = _resolve_file(checkpoint, "chat_template.jinja", local_files_only)
    if path and os.path.isfile(path):
        return Path(path).read_text(encoding="utf-8")
    return getattr(tokenizer, "chat_template", None)


# ----------------------------------------------------------------------------- hub access


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (never
    hangs: DNS and connect run in a daemon thread). False when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=constants.HF_HUB_CACHE)
        return isinstance(found, str)
    except Exception:
        return False


def _looks_like_path(checkpoint: str) -> bool:
    return (
        os.path.isabs(checkpoint)
        or checkpoint.startswith((".", "~"))
        or "\\" in checkpoint
        or checkpoint.count("/") != 1
    )


def _locate(
    checkpoint: str, hub_timeout: float, progress: ProgressFn | None
) -> tuple[str, bool, str, bool]:
    """Where to load ``checkpoint`` from: (source, local files only, what is tried, whether it
    is a Hub id). Raises :class:`BackendLoadError` for a missing folder or an unreachable Hub."""
    if os.path.isdir(os.path.expanduser(checkpoint)):
        source = os.path.expanduser(checkpoint)
        return source, True, f"the local folder {source}", False
    if _looks_like_path(checkpoint):
        raise BackendLoadError(
            f"Could not load LLaVA-OneVision: the folder {checkpoint!r} does not exist (and "
            "it is not a Hub id of the form owner/name).\n" + _FIX_HINT,
            tried=f"the local folder {checkpoint}",
            hint=_FIX_HINT,
        )
    if _in_hub_cache(checkpoint):
        return checkpoint, True, f"{checkpoint} from the Hugging Face cache", True
    if hub_reachable(hub_timeout):
        report(progress, 0.02, f"downloading {checkpoint} (first use; this can take minutes)")
        return checkpoint, False, f"downloading {checkpoint} from the Hugging Face Hub", True
    raise BackendLoadError(
        f"Could not load LLaVA-OneVision {checkpoint!r}: it is not in the Hugging Face "
        "cache and the Hub is unreachable (offline, or HF_HUB_OFFLINE is set).\n" + _FIX_HINT,
        tried="the Hugging Face cache, then the Hub (unreachable)",
        hint=_FIX_HINT,
    )


# ----------------------------------------------------------------------------- backend


class LlavaOnevisionBackend(Backend):
    """A LLaVA-OneVision model: exact per-frame video tokens, and answers from any tokens."""

    can_answer = True
    has_vision_attention = True
    has_llm_attention = True
    unavailable_reason = None

    def __init__(  # over 60 lines: one assignment per piece the backend holds, documented in place
        self,
        model,
        tokenizer,
        preprocessing: VideoPreprocessing,
        checkpoint: str | None = None,
        pretrained: bool = True,
        chat_template: str | None = None,
        batch_size: int | None = None,
        cache: TokenCache | None = None,
    ):
        super().__init__(cache)
        if not isinstance(getattr(model, "scissor", None), ScissorState):
            apply_patch(model, retention=1.0)  # stock unless tokens are given (video_tokens=)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.checkpoint = checkpoint
        self.pretrained = pretrained
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        config = model.config
        vision = config.vision_config
        if config.vision_feature_select_strategy != "full":
            raise ValueError(
                "expected vision_feature_select_strategy='full' (the llava-hf OneVision "
                f"checkpoints), got {config.vision_feature_select_strategy!r}"
            )
        if (preprocessing.height, preprocessing.width) != (vision.image_size, vision.image_size):
            raise ValueError(
                f"preprocessing resizes to {preprocessing.height}x{preprocessing.width} but the "
                f"vision tower expects {vision.image_size}x{vision.image_size}"
            )
        side = math.ceil((vision.image_size // vision.patch_size) / 2)
        self.grid = TokenGrid.square(side)
        self.hidden_size = config.text_config.hidden_size
        self.video_token = getattr(tokenizer, "video_token", None) or "<video>"
        self.video_token_id = config.video_token_id
        if tokenizer.convert_tokens_to_ids(self.video_token) != self.video_token_id:
            raise ValueError(
                f"tokenizer's {self.video_token!r} is not the config's video_token_id "
                f"{self.video_token_id}"
            )
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 2)
        self._lock = threading.RLock()
        self.name = f"LLaVA-OneVision ({checkpoint})" if checkpoint else "LLaVA-OneVision"
        params = sum(p.numel() for p in model.parameters()) / 1e6
        dtype = str(self.dtype).removeprefix("torch.")
        where = f"{self.device.type}, {dtype}, {params:,.1f} M parameters"
        if pretrained:
            self.description = (
                f"{self.name}: SigLIP features, projected and pooled to 14×14 per frame — the "
                f"tokens its language model reads; answers from its language model ({where})"
            )
        else:
            self.description = (
                "RANDOMLY INITIALISED LLaVA-OneVision-shaped model"
                + (f" ({checkpoint})" if checkpoint else "")
                + " — for tests and benchmarks only; its features and answers mean nothing"
                + f" ({where})"
            )

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        progress: ProgressFn | None = None,
        attn_implementation: str | None = None,
        batch_size: int | None = None,
        cache: TokenCache | None = None,
        hub_timeout: float = 3.0,
    ) -> LlavaOnevisionBackend:
        """Load a hub id or a local folder. Raises :class:`BackendLoadError` (plain words: what
        was tried, how to fix it) when it cannot; never hangs on an unreachable Hub.

        ``attn_implementation`` defaults to ``"sdpa"``, except bf16/fp16 on a CPU: there
        PyTorch's CPU flash-attention kernel is ~3x slower than plain matmuls, so ``"eager"``
        (benchmarks/bench_model_cpu.py measures both)."""
        device = resolve_device(device)
        try:
            dtype = dtype or default_dtype(device)
        except ValueError as err:
            raise BackendLoadError(str(err), tried=checkpoint) from err
        if attn_implementation is None:
            low_cpu = device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)
            attn_implementation = "eager" if low_cpu else "sdpa"
        report(progress, 0.0, f"locating {checkpoint}")
        source, local_only, tried, hub = _locate(checkpoint, hub_timeout, progress)
        args = (device, dtype, attn_implementation, batch_size, cache, progress)
        try:
            try:
                return cls._load(source, checkpoint, local_only, *args)
            except (OSError, ValueError):
                # only part of a hub checkpoint in the cache (an interrupted download): fetch it
                if not (hub and local_only) or not hub_reachable(hub_timeout):
                    raise
                tried += ", then downloading the missing files from the Hub"
                report(progress, 0.02, f"downloading the rest of {checkpoint}")
                return cls._load(source, checkpoint, False, *args)
        except BackendLoadError:
            raise
        except Exception as err:
            raise BackendLoadError(
                f"Could not load LLaVA-OneVision {checkpoint!r} (tried {tried}): "
                f"{type(err).__name__}: {err}\n" + _FIX_HINT,
                tried=tried,
                hint=_FIX_HINT,
            ) from err

    @classmethod
    def _load(
        cls, source, checkpoint, local_only, device, dtype, attn, batch_size, cache, progress
    ):
        from transformers import AutoConfig, AutoTokenizer, LlavaOnevisionForConditionalGeneration

        no_remote_code = {"local_files_only": local_only, "trust_remote_code": False}  # never
        config = AutoConfig.from_pretrained(source, **no_remote_code)
        if config.model_type != "llava_onevision":
            raise BackendLoadError(
                f"{checkpoint!r} is a {config.model_type!r} checkpoint, not LLaVA-OneVision "
                "(model_type 'llava_onevision'). Choose a LLaVA-OneVision checkpoint, e.g. "
                f"{DEFAULT_CHECKPOINT}.",
                tried=checkpoint,
            )
        report(progress, 0.05, "reading tokenizer and preprocessing config")
        tokenizer = AutoTokenizer.from_pretrained(source, **no_remote_code)
        preprocessing = load_preprocessing(source, local_files_only=local_only)
        chat_template = _load_chat_template(source, tokenizer, local_only)
        report(progress, 0.1, f"loading weights of {checkpoint} (a 0.5B model takes a while)")
        model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(
            source,
            dtype=dtype,
            attn_implementation=attn,
            output_loading_info=True,
            **no_remote_code,
        )
        missing = list(info.get("missing_keys") or [])
        report(progress, 0.9, f"moving the model to {device}")
        model = model.to(device).eval()
        pretrained = not getattr(model.config, RANDOM_WEIGHTS_FLAG, False) and not missing
        backend = cls(
            model,
            tokenizer,
            preprocessing,
            checkpoint=checkpoint,
            pretrained=pretrained,
            chat_template=chat_template,
            batch_size=batch_size,
            cache=cache,
        )
        if missing:
            backend.description += f" — {len(missing)} weights were missing from the checkpoint"
        report(progress, 1.0, f"loaded {checkpoint} on {device}")
        return backend

    @property
    def cache_id(self) -> Hashable:
        if self.checkpoint is None:
            return ("llava_onevision", id(self.model))
        return ("llava_onevision", self.checkpoint, str(self.device), str(self.dtype))

    # -- encoding -----------------------------------------------------------------------------

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, S, S) float32 pixel values, as the model expects."""
        return self.preprocessing(frames)

    def _encode(self, frames: np.ndarray, progress: ProgressFn | None) -> torch.Tensor:
        n = len(frames)
        out = torch.empty(n, self.tokens_per_frame, self.hidden_size, dtype=torch.float32)
        report(progress, 0.0, f"encoding {n} frames")
        with self._lock, torch.inference_mode():
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                pixels = self.preprocess(frames[start:stop]).to(self.device, self.dtype)
                out[start:stop] = self.video_tokens(pixels).float().cpu()
                report(progress, stop / n, f"encoded frame {stop}/{n}")
        return out

    def video_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(b, 3, S, S) pixel values -> (b, tokens_per_frame, d): the model's own
        ``get_video_features`` (vision tower -> projector -> pooling), without the newline."""
        b, n = pixel_values.shape[0], pixel_values.shape[0] * self.tokens_per_frame
        # positional: the argument is `pixel_values_videos` in transformers 5.24, `pixel_values`
        # in earlier 5.x releases
        feats = self.model.model.get_video_features(pixel_values[None], return_dict=True)
        feats = feats.pooler_output.reshape(-1, self.hidden_size)
        if feats.shape[0] == n + 1:  # 5.24 appends the video's image_newline here
            feats = feats[:n]
        elif feats.shape[0] != n:  # earlier 5.x append it in forward()
            raise RuntimeError(f"expected {n} (+1) video features, got {feats.shape[0]}")
        return feats.reshape(b, self.tokens_per_frame, self.hidden_size)

    def vision_attention(
        self, frames: np.ndarray, key: Hashable | None = None, progress: ProgressFn | None = None
    ) -> torch.Tensor:
        """VisionZip's importance of each pooled token -> (T, tokens_per_frame) float32: the
        attention each patch receives in the vision tower's last layer (mean over heads and
        queries; SigLIP has no CLS token), pooled 27x27 -> 14x14 by the model's own video
        pooling. Cached like the tokens."""
        frames = check_frames(frames)
        ckey = ("vision-importance", self.cache_key(frames, key))
        hit = self.cache.get(ckey)
        if hit is not None:
            return hit
        tower = self.model.model.vision_tower
        vision = self.model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        heads = vision.num_attention_heads
        batch = batch_within_budget("VisionZip", heads, patches, self.batch_size)  # per frame
        received = lambda weights: weights.float().mean(dim=(1, 2))  # noqa: E731 (b, patches)
        n = len(frames)
        with (
            self._lock,
            torch.inference_mode(),
            capture_attention(tower, last_vision_attention(tower), keep=received) as maps,
        ):
            for start in range(0, n, batch):
                pixels = self.preprocess(frames[start : start + batch])
                tower(pixel_values=pixels.to(self.device, self.dtype))
                report(progress, min(start + batch, n) / n, "vision attention")
        importance = self.model.model.apply_pooling(torch.cat(maps)[..., None])[..., 0].cpu()
        self.cache.put(ckey, importance)
        return importance

    # -- answering ----------------------------------------------------------------------------

    def build_prompt(self, question: str) -> str:
        """The chat prompt for one video and ``question``, with exactly one video placeholder."""
        question = question.replace(self.video_token, "").strip()
        if self.chat_template:  # a multimodal template, else a text-only one (plain Qwen)
            contents = (
                [{"type": "video"}, {"type": "text", "text": question}],
                f"{self.video_token}\n{question}",
            )
            for content in contents:
                text = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": content}],
                    chat_template=self.chat_template,
                    tokenize=False,
                    add_generation_prompt=True,
                )
                if text.count(self.video_token) == 1:
                    return text
        return FALLBACK_TEMPLATE.format(video=self.video_token, question=question)

    def prompt_ids(self, question: str) -> tuple[torch.Tensor, int]:
        """Token ids of the prompt (1-D) and the index of its single video placeholder."""
        ids = self.tokenizer(self.build_prompt(question), return_tensors="pt").input_ids[0]
        where = (ids == self.video_token_id).nonzero().flatten()
        if len(where) != 1:
            raise ValueError(f"prompt has {len(where)} video placeholders, expected 1")
        return ids, int(where[0])

    def stock_input_ids(self, question: str, num_frames: int) -> torch.Tensor:
        """(1, L) ids as transformers' processor builds them for a ``num_frames`` video: the
        placeholder repeated num_frames * tokens_per_frame + 1 times (the +1: image_newline)."""
        prompt = self.build_prompt(question)
        count = num_frames * self.tokens_per_frame + 1
        return self.tokenizer(
            prompt.replace(self.video_token, self.video_token * count), return_tensors="pt"
        ).input_ids

    def video_inputs(self, question: str) -> dict[str, torch.Tensor]:
        """The prompt with its one video placeholder as the patched model takes it:
        ``input_ids`` (1, L) and ``attention_mask``, on the model's device."""
        ids, _ = self.prompt_ids(question)
        ids = ids[None].to(self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def check_llm_attention(self, question: str, num_tokens: int) -> None:
        """Refuse (ValueError) before any work a :meth:`llm_attention` over ``num_tokens``
        tokens whose eager attention would not fit the budget."""
        ids, _ = self.prompt_ids(question)  # the placeholder becomes the tokens + a newline
        heads = decoder_of(self.model).config.num_attention_heads
        check_attention_budget("FastV", heads, len(ids) + num_tokens)

    def llm_attention(self, question: str, tokens: torch.Tensor, layer: int = 2) -> torch.Tensor:
        """FastV's ranking of ``tokens`` ((T, P, d) or (K, d)): the attention each receives from
        the prompt's last token in decoder layer ``layer``, averaged over heads -> (K,) float32
        on the CPU (:func:`~scissor_viz.models.attention.fastv_scores` on the language model's
        input that :meth:`answer` prefills: the patch's splice of the tokens + image_newline)."""
        flat = tokens.reshape(-1, tokens.shape[-1])
        with self._lock, torch.inference_mode():
            inputs, rows = self.model.scissor.splice([flat], **self.video_inputs(question))
            where = rows[0][:, 1]  # one prompt: the K tokens' positions
            embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
            scores = fastv_scores(self.model, embeds, mask, where, layer=layer)
        return scores.float().cpu()

    def generation_kwargs(self, max_new_tokens: int, min_new_tokens: int = 0) -> dict:
        """Greedy decoding, returning raw per-step logits (the same for stock comparisons)."""
        gen = self.model.generation_config
        pad = gen.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id
        if pad is None:
            eos = gen.eos_token_id
            pad = eos[0] if isinstance(eos, (list, tuple)) else eos
        return {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": pad,
            "return_dict_in_generate": True,
            "output_logits": True,
        }

    def _timed_generate(self, inputs: dict, max_new_tokens: int, min_new_tokens: int, **kwargs):
        """Greedy ``generate`` of the patched model: (output, prefill seconds, total seconds);
        the prefill is the first forward pass (the prompt's), timed by hooks on the model."""
        stamps: list[float] = []

        def tick(*_args, **_kwargs):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            stamps.append(time.perf_counter())

        pre = self.model.register_forward_pre_hook(tick)
        post = self.model.register_forward_hook(tick)
        try:
            started = time.perf_counter()
            out = self.model.generate(
                **inputs, **kwargs, **self.generation_kwargs(max_new_tokens, min_new_tokens)
            )
            tick()
            total = stamps[-1] - started
        finally:
            pre.remove()
            post.remove()
        return out, (stamps[1] - stamps[0] if len(stamps) >= 2 else total), total

    def answer(
        self,
        question: str,
        tokens: torch.Tensor,
        max_new_tokens: int = 64,
        *,
        min_new_tokens: int = 0,
        newline: bool = True,
        progress: ProgressFn | None = None,
    ) -> Answer:
        """Greedy answer to ``question`` from visual ``tokens`` ((K, d), or (T, 196, d) = full).

        The patched model's own ``generate(input_ids, attention_mask, video_tokens=[tokens])``
        -- what a researcher using :func:`scissor_viz.apply_patch` runs: the LLM receives
        exactly these K embeddings in place of the prompt's one video placeholder, followed
        (``newline=True``, as the stock model does) by the model's ``image_newline``."""
        if tokens.ndim == 3:
            tokens = tokens.reshape(-1, tokens.shape[-1])
        if tokens.ndim != 2 or tokens.shape[1] != self.hidden_size or tokens.shape[0] == 0:
            raise ValueError(
                f"tokens must be (K, {self.hidden_size}) with K >= 1, got {tuple(tokens.shape)}"
            )
        report(progress, 0.0, f"answering from {tokens.shape[0]} visual tokens")
        video = VideoTokens(tokens, tail=newline)
        with self._lock, torch.inference_mode():
            inputs = self.video_inputs(question)
            out, prefill, total = self._timed_generate(
                inputs, max_new_tokens, min_new_tokens, video_tokens=[video]
            )
            prompt_tokens = self.model.scissor.last[0].length_after
        ids = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        first = out.logits[0][0].float().cpu()
        probs = first.softmax(-1)
        top = probs.topk(min(5, probs.numel()))
        report(progress, 1.0, "answered")
        return Answer(
            text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            visual_tokens=int(tokens.shape[0]),
            prefill_seconds=prefill,
            generate_seconds=total,
            new_tokens=len(ids),
            token_ids=ids,
            first_logits=first,
            first_probs=probs,
            first_top=[
                (self.tokenizer.decode([i]), float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist())
            ],
            newline=newline,
            prompt_tokens=prompt_tokens,
            backend=self.name,
            pretrained=self.pretrained,
        )

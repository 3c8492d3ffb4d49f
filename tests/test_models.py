"""The model layer on a tiny random LLaVA-OneVision (tests/tiny_llava.py), offline.

What is proved, against transformers' own code on the same frames:
* preprocessing == LlavaOnevisionImageProcessorPil's whole-image view, with the checkpoint's
  mean/std (never the classes' CLIP defaults);
* encode == the model's get_video_features (and its own forward's video features), minus the
  one trailing image_newline;
* answer(full tokens) == stock generate(input_ids, pixel_values_videos): same ids, same text,
  same logits at every step; a compressed answer's LLM input holds exactly the K given rows;
* caching, progress, the weight-free fallback with a plain reason, the random-weights flag.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scissor_viz.analysis import token_layers
from scissor_viz.metrics import first_token_kl
from scissor_viz.models import (
    ALLOW_ANY_ENV,
    DEFAULT_CHECKPOINT,
    MAX_BACKENDS_ENV,
    REFUSED,
    Answer,
    AnswerUnavailable,
    BackendRegistry,
    CheckpointPolicy,
    CheckpointRefused,
    LazyBackend,
    TokenCache,
    load_backend,
    loading,
    resolve_checkpoint,
    resolve_device,
)
from scissor_viz.models.attention import ATTENTION_BUDGET_ENV
from scissor_viz.models.llava_onevision import (
    RANDOM_WEIGHTS_FLAG,
    LlavaOnevisionBackend,
    VideoPreprocessing,
    load_preprocessing,
)
from scissor_viz.models.loading import hub_reachable
from scissor_viz.models.pixels import (
    DESCRIPTOR_SIZE,
    PixelBackend,
    clip_descriptors,
    frame_descriptors,
)
from scissor_viz.patch import ScissorState
from scissor_viz.scc import scissor_compress, scissor_index
from scissor_viz.video import load_video
from tests.tiny_llava import IMAGE_MEAN, IMAGE_STD, random_frames
from tests.tiny_vlms import twin_backend

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"

QUESTION = "What is happening in this video?"


@pytest.fixture(scope="module")
def frames():
    return random_frames(3, 90, 120, seed=1)


@pytest.fixture
def without_torchvision(monkeypatch):
    """The torchvision-free route, whatever is installed (this machine has no usable one)."""
    from scissor_viz.models import processors

    monkeypatch.setattr(processors, "torchvision_usable", lambda: False)


def stock_video_features(backend, pixel_values):
    """The transformers model's own video features for one video: (T * 196 + 1, d), the last
    row the image_newline (transformers 5.24 appends it in get_video_features, earlier 5.x
    releases in forward: added here when absent)."""
    with torch.inference_mode():
        out = backend.model.model.get_video_features(pixel_values[None])  # positional: 5.x renames
    feats = out.pooler_output.reshape(-1, backend.hidden_size)
    if feats.shape[0] == len(pixel_values) * 196:
        feats = torch.cat([feats, backend.model.model.image_newline[None].to(feats)])
    return feats


def pil_processor_pixels(folder, frames):
    """LlavaOnevisionImageProcessorPil (loaded from the checkpoint) on each frame: the view of
    the whole image resized to 384 x 384 (patch 0 of its any-resolution output). Named
    explicitly: where torchvision is installed, AutoImageProcessor picks the torchvision
    backend, whose antialiased tensor resize differs from PIL's by up to 2/255."""
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    processor = LlavaOnevisionImageProcessorPil.from_pretrained(folder)
    return processor(images=list(frames), return_tensors="pt")["pixel_values"][:, 0]


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("shape", [(90, 120), (384, 384), (480, 640), (37, 500)])
def test_preprocessing_matches_transformers_image_processor(
    tiny_llava_folder, shape, without_torchvision
):
    frames = random_frames(2, *shape, seed=3)
    ours = load_preprocessing(str(tiny_llava_folder))(frames)
    theirs = pil_processor_pixels(tiny_llava_folder, frames)
    assert ours.shape == (2, 3, 384, 384) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_preprocessing_uses_checkpoint_mean_std_not_class_defaults(
    tiny_llava_folder, without_torchvision
):
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    pp = load_preprocessing(str(tiny_llava_folder))
    assert pp.mean == tuple(IMAGE_MEAN) and pp.std == tuple(IMAGE_STD)
    assert pp.mean != tuple(OPENAI_CLIP_MEAN) and pp.std != tuple(OPENAI_CLIP_STD)
    # by hand: a 384x384 frame is not resized; x / 255 then (x - 0.5) / 0.5
    frame = random_frames(1, 384, 384, seed=4)
    expected = (frame[0].astype(np.float64) / 255).astype(np.float32)
    expected = ((expected - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1)
    np.testing.assert_allclose(pp(frame)[0].numpy(), expected, rtol=0, atol=1e-6)


def test_preprocessing_config_precedence_and_absence(tiny_llava_folder, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_llava_folder, folder)
    video_cfg = json.loads((folder / "video_preprocessor_config.json").read_text())
    video_cfg["image_mean"] = [0.25, 0.5, 0.75]
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video_cfg))
    assert load_preprocessing(str(folder)).mean == (0.25, 0.5, 0.75)  # video config first
    (folder / "video_preprocessor_config.json").unlink()
    assert load_preprocessing(str(folder)).mean == tuple(IMAGE_MEAN)  # then the image config
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="refusing to guess"):
        load_preprocessing(str(folder))
    # a processor_config.json with a nested video processor config is read too
    nested = {"video_processor": dict(video_cfg, image_std=[0.2, 0.2, 0.2])}
    (folder / "processor_config.json").write_text(json.dumps(nested))
    assert load_preprocessing(str(folder)).std == (0.2, 0.2, 0.2)


def test_preprocessing_from_config_sizes():
    base = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    assert VideoPreprocessing.from_config(dict(base, size={"shortest_edge": 384})).height == 384
    assert VideoPreprocessing.from_config(dict(base, size={"height": 8, "width": 9})).width == 9
    with pytest.raises(ValueError):
        VideoPreprocessing.from_config({"size": {"height": 384, "width": 384}})


# --------------------------------------------- transformers' processors (models/processors.py)


def pil_resized(frames, height, width, resample):
    """A small reference: PIL's resize of each frame, then (x / 255 - 0.5) / 0.5."""
    from PIL import Image

    out = [
        np.asarray(Image.fromarray(f).resize((width, height), resample=resample)) for f in frames
    ]
    x = np.stack(out).astype(np.float64) / 255
    return torch.from_numpy(((x.astype(np.float32) - 0.5) / 0.5).transpose(0, 3, 1, 2))


def test_torchvision_usable_is_false_when_it_cannot_import(monkeypatch):
    import sys

    from scissor_viz.models import processors

    processors.torchvision_usable.cache_clear()
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` raises
    try:
        assert processors.torchvision_usable() is False
    finally:
        processors.torchvision_usable.cache_clear()


def first_tensor(out) -> torch.Tensor:
    """A preprocessing's pixels: the tensor, or the first of its dict of model inputs."""
    return out if isinstance(out, torch.Tensor) else next(iter(out.values()))


PIL_ROUTE = {  # family -> the torchvision-free transformers class that makes its pixels
    "llava_onevision": "PilBackend",
    "llava_next_video": "PilBackend",
    "internvl": "PilBackend",
    "smolvlm": "SmolVLMImageProcessorPil",
}


@pytest.mark.parametrize(
    "family", ["llava_onevision", "llava_next_video", "internvl", "smolvlm", "qwen2_5_vl"]
)
def test_the_family_video_processor_is_chosen_by_importability(monkeypatch, family):
    """Where torchvision runs, the family's own video processor (the class the backend names,
    built from the checkpoint's config) makes the pixel inputs; where it does not, the
    torchvision-free transformers class. Decided by ``torchvision_usable``, not hard-coded."""
    import transformers

    from scissor_viz.models import processors
    from scissor_viz.models.loading import family_of
    from tests.tiny_vlms import TWIN_CONFIGS

    frames = random_frames(4, 48, 90, seed=8)
    made = []

    class FakeVideoProcessor:  # stands in for the torchvision-backed class
        @classmethod
        def from_dict(cls, cfg):
            made.append(cfg)
            return cls()

        def __call__(self, videos, return_tensors):
            (video,) = videos
            t = len(video)
            if family.startswith("qwen"):
                return {
                    "pixel_values_videos": torch.full((t * 2, 3), 7.0),
                    "video_grid_thw": torch.tensor([[t // 2, 2, 2]]),
                }
            key = "pixel_values" if family == "smolvlm" else "pixel_values_videos"
            out = {key: torch.full((1, t, 3, 64, 64), 7.0)}
            if family == "smolvlm":
                out["pixel_attention_mask"] = torch.ones(1, t, 64, 64, dtype=torch.int64)
            return out

    cls = family_of(family)
    half = [0.5] * 3
    cfg = TWIN_CONFIGS.get(family, {"size": 64, "image_mean": half, "image_std": half})
    monkeypatch.setattr(transformers, cls.video_processor, FakeVideoProcessor, raising=False)

    monkeypatch.setattr(processors, "torchvision_usable", lambda: True)
    pre = cls.preprocessing_from_config(cfg)
    pixels = first_tensor(pre(frames))
    assert made and (pixels == 7).all()  # the video processor's output, from the config
    assert made[0]["image_mean"] == half

    monkeypatch.setattr(processors, "torchvision_usable", lambda: False)
    pre = cls.preprocessing_from_config(cfg)
    pixels = first_tensor(pre(frames))
    assert len(made) == 1 and not (pixels == 7).all()
    if family in PIL_ROUTE:
        assert pre.processor.name == PIL_ROUTE[family] and not pre.processor.is_video


def test_qwen3_vl_never_uses_its_clip_budget_video_processor(monkeypatch):
    """Qwen3VLVideoProcessor sizes frames from the whole clip's budget (the grid would depend
    on the encode batch): the per-frame path is used even where torchvision runs."""
    from scissor_viz.models import Qwen3VLBackend, processors
    from tests.tiny_vlms import TWIN_CONFIGS

    monkeypatch.setattr(processors, "torchvision_usable", lambda: True)
    pre = Qwen3VLBackend.preprocessing_from_config(TWIN_CONFIGS["qwen3_vl"])
    assert pre.video is None
    out = pre(random_frames(4, 48, 88, seed=1))
    assert out["video_grid_thw"].tolist() == [[2, 12, 22]]


@pytest.mark.parametrize("shape", [(64, 64), (48, 90), (90, 48), (37, 100)])
def test_next_video_and_internvl_pixels_equal_their_towers_image_processors(
    without_torchvision, shape
):
    """Cross-checks against other transformers classes doing the same steps: LLaVA-NeXT-Video's
    short side + centre crop = ``CLIPImageProcessorPil``'s; InternVL's squash =
    ``GotOcr2ImageProcessorPil`` without patches (InternVL's own image processor)."""
    from transformers import CLIPImageProcessorPil, GotOcr2ImageProcessorPil

    from tests.tiny_vlms import TWIN_CONFIGS

    frames = random_frames(3, *shape, seed=9)
    _, next_video = twin_backend("llava_next_video")
    clip = CLIPImageProcessorPil(
        size={"shortest_edge": 64},
        crop_size={"height": 64, "width": 64},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    theirs = clip(images=list(frames), return_tensors="pt")["pixel_values"]
    ours = next_video.pixel_inputs(frames)["pixel_values_videos"][0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)

    _, internvl = twin_backend("internvl")
    got = GotOcr2ImageProcessorPil(**TWIN_CONFIGS["internvl"], crop_to_patches=False)
    theirs = got(images=list(frames), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(
        internvl.pixel_inputs(frames)["pixel_values"], theirs, rtol=0, atol=1e-6
    )


def test_smolvlm_pixels_are_its_video_processors_two_resizes(without_torchvision):
    """SmolVLM2's video processor resizes the longest edge to the video size (the other edge
    rounded up to even), then the frame to the tower's square: a 48 x 90 frame goes
    90 -> 64 wide, 48 -> 34 high, then 64 x 64 (not one squash, which differs)."""
    from PIL import Image

    _, backend = twin_backend("smolvlm")
    frames = random_frames(3, 48, 90, seed=10)
    out = backend.pixel_inputs(frames)
    assert out["pixel_values"].shape == (1, 3, 3, 64, 64)
    assert out["pixel_attention_mask"].shape == (1, 3, 64, 64) and out["pixel_attention_mask"].all()
    lanczos = Image.Resampling.LANCZOS
    step = np.stack([np.asarray(Image.fromarray(f).resize((64, 34), lanczos)) for f in frames])
    expected = pil_resized(step, 64, 64, lanczos)
    torch.testing.assert_close(out["pixel_values"][0], expected, rtol=0, atol=1e-6)
    squash = pil_resized(frames, 64, 64, lanczos)
    assert (out["pixel_values"][0] - squash).abs().max() > 0.01


# ----------------------------------------------------------------------------- encoding


def test_encode_equals_model_video_features(tiny_backend, tiny_llava_folder, frames):
    tiny_backend.cache.clear()
    tokens = tiny_backend.encode(frames)
    t, d = len(frames), tiny_backend.hidden_size
    assert tokens.shape == (t, 196, d) and tokens.dtype == torch.float32
    assert tiny_backend.tokens_per_frame == 196
    # the model's own features, from transformers' own image processor's pixels
    stock = stock_video_features(tiny_backend, pil_processor_pixels(tiny_llava_folder, frames))
    assert stock.shape == (t * 196 + 1, d)  # + one image_newline per video
    torch.testing.assert_close(tokens.reshape(-1, d), stock[:-1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stock[-1], tiny_backend.model.model.image_newline.detach())


def test_encode_equals_features_inside_stock_forward(tiny_backend, frames):
    """What the stock forward hands its LLM in the placeholder run: encode's tokens, then the
    one image_newline."""
    tiny_backend.cache.clear()
    tokens = tiny_backend.encode(frames)
    ids = tiny_backend.stock_input_ids(QUESTION, len(frames))
    seen, handle = capture_llm_inputs(tiny_backend)
    try:
        with torch.inference_mode():
            tiny_backend.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values_videos=tiny_backend.preprocess(frames)[None],
            )
    finally:
        handle.remove()
    run = seen[0][0][ids[0] == tiny_backend.video_token_id]
    assert run.shape == (len(frames) * 196 + 1, tiny_backend.hidden_size)
    torch.testing.assert_close(tokens.reshape(-1, tiny_backend.hidden_size), run[:-1])
    assert torch.equal(run[-1], tiny_backend.model.model.image_newline.detach())


def test_encode_does_not_depend_on_batch_size(tiny_backend, frames, monkeypatch):
    results = []
    for size in (1, 3):
        monkeypatch.setattr(tiny_backend, "batch_size", size)
        tiny_backend.cache.clear()
        results.append(tiny_backend.encode(frames))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_encode_rejects_bad_frames(tiny_backend):
    with pytest.raises(ValueError):
        tiny_backend.encode(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError):
        tiny_backend.encode(np.zeros((1, 8, 8, 3), np.float32))


def test_encode_reports_progress(tiny_backend, frames):
    tiny_backend.cache.clear()
    seen = []
    tiny_backend.encode(frames, progress=lambda f, msg: seen.append((f, msg)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(seen) >= 3  # 3 frames in batches of 2: start, 2/3, 3/3


# ----------------------------------------------------------------------------- caching


def count_vision_calls(backend):
    calls = []
    handle = backend.model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_cache_hit_skips_the_vision_tower(tiny_backend, frames):
    tiny_backend.cache.clear()
    calls, handle = count_vision_calls(tiny_backend)
    try:
        first = tiny_backend.encode(frames, key="clip-a")
        n = len(calls)
        assert n > 0
        again = tiny_backend.encode(frames, key="clip-a")  # slider moved / second question
        assert len(calls) == n and again is first
        tiny_backend.encode(frames.copy())  # no key: the frames' bytes are hashed
        m = len(calls)
        assert m > n
        tiny_backend.encode(frames.copy())
        assert len(calls) == m
        tiny_backend.encode(frames[:2], key="clip-a")  # same key, other frames: not stale
        assert len(calls) > m
    finally:
        handle.remove()
    assert tiny_backend.cache.stats.hits >= 2


def test_token_cache_is_bounded():
    cache = TokenCache(max_entries=2, max_bytes=1000)
    for k in "abc":
        cache.put(k, torch.zeros(10))  # 40 bytes each
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.get("b")
    cache.put("d", torch.zeros(10))
    assert "b" in cache and "c" not in cache  # least recently used goes first
    cache.put("big", torch.zeros(200))  # 800 bytes: evicts others to fit
    assert "big" in cache and cache.nbytes <= 1000
    cache.put("huge", torch.zeros(1000))  # larger than the bound: not kept
    assert "huge" not in cache


def test_nbytes_counts_what_a_value_holds_once():
    from dataclasses import dataclass

    from scissor_viz.models.cache import nbytes

    @dataclass
    class Held:
        a: torch.Tensor
        b: object

    base = torch.zeros(100)  # 400 bytes
    array = np.zeros(50)  # 400 bytes
    assert nbytes(base) == 400 and nbytes(base[:10]) == 400  # a view keeps its storage alive
    assert nbytes(Held(base, [base[5:], {"x": (array, array[::2])}])) == 800
    assert nbytes((torch.zeros(3), "text", 7, None)) == 12
    assert nbytes(Answer("t", 1, 0.1, 0.2, 1, [0], torch.zeros(10), torch.zeros(10))) == 80


# ----------------------------------------------------------------------------- answering


def generate_stock(backend, frames, max_new_tokens):
    """transformers' own path: expanded placeholders + pixel values, the model's generate."""
    ids = backend.stock_input_ids(QUESTION, len(frames))
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values_videos=backend.preprocess(frames)[None],
            **backend.generation_kwargs(max_new_tokens, min_new_tokens=max_new_tokens),
        )
    return out.sequences[0, ids.shape[1] :].tolist(), [step[0] for step in out.logits]


def test_full_tokens_answer_equals_stock_generate(tiny_backend, frames):
    n = 6
    stock_ids, stock_logits = generate_stock(tiny_backend, frames, n)
    full = stock_video_features(tiny_backend, tiny_backend.preprocess(frames))[:-1]
    ans = tiny_backend.answer(QUESTION, full, max_new_tokens=n, min_new_tokens=n)
    assert ans.token_ids == stock_ids and ans.new_tokens == n
    assert ans.text == tiny_backend.tokenizer.decode(stock_ids, skip_special_tokens=True).strip()
    assert torch.equal(ans.first_logits, stock_logits[0].float())
    # every step's logits: rerun answer's own call (the patched generate, the tokens given as
    # video_tokens=) and compare all steps
    with torch.inference_mode():
        ours = tiny_backend.model.generate(
            **tiny_backend.video_inputs(QUESTION),
            video_tokens=[full],
            **tiny_backend.generation_kwargs(n, min_new_tokens=n),
        )
    for a, b in zip(ours.logits, stock_logits, strict=True):
        torch.testing.assert_close(a[0], b, rtol=0, atol=0)

    # the cached encode() output (batched frames) gives the same answer
    encoded = tiny_backend.encode(frames)
    ans2 = tiny_backend.answer(QUESTION, encoded, max_new_tokens=n, min_new_tokens=n)
    assert ans2.token_ids == stock_ids
    torch.testing.assert_close(ans2.first_logits, stock_logits[0].float())
    assert ans2.visual_tokens == len(frames) * 196 and ans2.newline


def test_answers_go_through_the_patch(tiny_backend, frames):
    """The backend's model is patched once at load (retention 1: stock with pixels), and an
    answer is the patched generate fed the tokens: its record says so."""
    scissor = tiny_backend.model.scissor
    assert isinstance(scissor, ScissorState) and scissor.identity
    assert type(tiny_backend.model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert not hasattr(tiny_backend, "build_inputs_embeds")  # no second splice
    tokens = tiny_backend.encode(frames).reshape(-1, tiny_backend.hidden_size)[:40]
    ans = tiny_backend.answer(QUESTION, tokens, max_new_tokens=2)
    record = tiny_backend.model.scissor.last[0]
    assert record.videos[0].grid is None and record.videos[0].num_tokens == 40  # tokens were given
    assert record.tokens_after == 41 and record.length_after == ans.prompt_tokens


@pytest.mark.parametrize("retention", [0.3, 0.05])
def test_scc_answer_is_the_patched_models_answer(tiny_backend, frames, retention):
    """App and library are one path: the tiny_backend's answer from SCC's compression of its
    encode() equals apply_patch(model, tau=...) + the model's generate from pixels (the
    stock prompt, the processor's placeholders): same ids, same first logits, same prompt."""
    from scissor_viz import apply_patch
    from scissor_viz.scc import scissor_compress, tau_for_retention

    n = 5
    grid = tiny_backend.encode(frames)  # (T, 196, d), the cached tokens the app compresses
    tau = tau_for_retention(grid, retention)
    comp = scissor_compress(grid, tau)
    assert comp.num_tokens < grid.shape[0] * grid.shape[1]
    ans = tiny_backend.answer(QUESTION, comp.tokens, max_new_tokens=n, min_new_tokens=n)

    ids = tiny_backend.stock_input_ids(QUESTION, len(frames))
    apply_patch(tiny_backend.model, tau=tau)
    try:
        with torch.inference_mode():
            out = tiny_backend.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values_videos=tiny_backend.preprocess(frames)[None],
                **tiny_backend.generation_kwargs(n, min_new_tokens=n),
            )
        record = tiny_backend.model.scissor.last[0]
    finally:
        apply_patch(tiny_backend.model, retention=1.0)  # the tiny_backend's own setting
    assert record.videos[0].num_tokens == comp.num_tokens and record.tau == tau
    assert record.length_after == ans.prompt_tokens
    assert ans.token_ids == out.sequences[0, ids.shape[1] :].tolist()
    torch.testing.assert_close(ans.first_logits, out.logits[0][0].float(), rtol=1e-5, atol=1e-5)
    assert ans.visual_tokens == comp.num_tokens


def capture_llm_inputs(backend):
    """A hook that records the inputs_embeds of each call of the language model."""
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["inputs_embeds"].detach().clone())

    handle = backend.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("newline", [True, False])
def test_compressed_answer_receives_exactly_k_tokens(tiny_backend, frames, newline):
    tokens = tiny_backend.encode(frames).reshape(-1, tiny_backend.hidden_size)
    compressed = tokens[::37] * 1.5  # any K x d sequence (K = 16)
    k = compressed.shape[0]
    ids, at = tiny_backend.prompt_ids(QUESTION)
    seen, handle = capture_llm_inputs(tiny_backend)
    try:
        ans = tiny_backend.answer(
            QUESTION, compressed, max_new_tokens=3, min_new_tokens=3, newline=newline
        )
    finally:
        handle.remove()
    prefill = seen[0][0]  # first call = the prompt's forward pass
    assert prefill.shape[0] == len(ids) - 1 + k + int(newline) == ans.prompt_tokens
    assert torch.equal(prefill[at : at + k], compressed)
    text = tiny_backend.model.get_input_embeddings()(ids)
    assert torch.equal(prefill[:at], text[:at])  # the text around the run is untouched
    assert torch.equal(prefill[at + k + int(newline) :], text[at + 1 :])
    if newline:
        assert torch.equal(prefill[at + k], tiny_backend.model.model.image_newline.detach())
    assert ans.visual_tokens == k and ans.newline == newline
    assert all(s.shape[1] == 1 for s in seen[1:])  # later calls decode one token each


def test_answer_fields_and_kl(tiny_backend, frames):
    tokens = tiny_backend.encode(frames)
    full = tiny_backend.answer(QUESTION, tokens, max_new_tokens=4, min_new_tokens=4)
    rows = tokens.reshape(-1, tiny_backend.hidden_size)
    small = tiny_backend.answer(QUESTION, rows[:50], max_new_tokens=4)
    vocab = tiny_backend.model.config.text_config.vocab_size
    assert full.first_logits.shape == (vocab,) and full.first_probs.dtype == torch.float32
    assert abs(float(full.first_probs.sum()) - 1) < 1e-5
    assert 0 < full.prefill_seconds <= full.generate_seconds
    assert full.new_tokens == len(full.token_ids) == 4
    assert len(full.first_top) == 5 and full.first_top[0][1] >= full.first_top[-1][1]
    assert first_token_kl(full.first_logits, full.first_logits) == pytest.approx(0.0, abs=1e-9)
    assert first_token_kl(full.first_logits, small.first_logits) > 0
    assert not full.pretrained  # random weights: never a real answer


def test_llm_attention_scores_each_token(tiny_backend, frames):
    tokens = tiny_backend.encode(frames)
    scores = tiny_backend.llm_attention(QUESTION, tokens)
    assert scores.shape == (len(frames) * 196,) and scores.dtype == torch.float32
    assert (scores >= 0).all() and float(scores.sum()) <= 1 + 1e-5
    assert tiny_backend.model.config.text_config._attn_implementation == "sdpa"  # restored


def test_vision_attention_is_the_towers_attention_pooled(tiny_backend, frames):
    importance = tiny_backend.vision_attention(frames, key="importance-clip")
    assert importance.shape == (len(frames), 196) and importance.dtype == torch.float32
    tower = tiny_backend.model.model.vision_tower
    previous = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:  # the reference: transformers' own attentions of the last layer
        with torch.inference_mode():
            out = tower(pixel_values=tiny_backend.preprocess(frames), output_attentions=True)
    finally:
        tower.set_attn_implementation(previous)
    received = out.attentions[-1].float().mean(dim=(1, 2))  # (T, 729): mean over heads, queries
    torch.testing.assert_close(received.sum(-1), torch.ones(len(frames)))  # rows sum to 1
    expected = tiny_backend.model.model.apply_pooling(received[..., None])[..., 0]
    torch.testing.assert_close(importance, expected)
    assert tower.config._attn_implementation == previous  # restored
    assert tiny_backend.vision_attention(frames, key="importance-clip") is importance  # cached


def test_answer_rejects_wrong_width(tiny_backend):
    with pytest.raises(ValueError):
        tiny_backend.answer(QUESTION, torch.zeros(5, tiny_backend.hidden_size + 1))


def test_prompt_has_one_placeholder(tiny_backend):
    prompt = tiny_backend.build_prompt("what is <video> this?")
    assert prompt.count("<video>") == 1 and "<|im_start|>assistant" in prompt


# ----------------------------------------------------------------------------- flags, fallback


def test_random_weights_flag(tiny_backend, tiny_llava_folder, tmp_path):
    assert tiny_backend.pretrained is False
    assert "RANDOMLY INITIALISED" in tiny_backend.description
    assert tiny_backend.can_answer and tiny_backend.unavailable_reason is None
    folder = tmp_path / "unflagged"
    shutil.copytree(tiny_llava_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg[RANDOM_WEIGHTS_FLAG]
    (folder / "config.json").write_text(json.dumps(cfg))
    unflagged = load_backend(str(folder), fallback=False)
    assert unflagged.pretrained is True and "RANDOMLY" not in unflagged.description


def test_missing_weights_are_not_pretrained(tiny_llava_folder, tmp_path):
    """Weights absent from a checkpoint are randomly initialised by transformers: say so."""
    import safetensors.torch

    folder = tmp_path / "partial"
    shutil.copytree(tiny_llava_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg[RANDOM_WEIGHTS_FLAG]
    (folder / "config.json").write_text(json.dumps(cfg))
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    dropped = [k for k in weights if "multi_modal_projector.linear_1.weight" in k]
    assert len(dropped) == 1
    del weights[dropped[0]]
    safetensors.torch.save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    b = load_backend(str(folder), fallback=False)
    assert b.pretrained is False and "missing" in b.description


def test_cpu_low_precision_uses_eager_attention(tiny_llava_folder, monkeypatch):
    monkeypatch.setenv("SCISSOR_VIZ_DTYPE", "bfloat16")
    b = load_backend(str(tiny_llava_folder), device="cpu", fallback=False)
    assert b.dtype == torch.bfloat16
    assert b.model.config.text_config._attn_implementation == "eager"
    assert b.model.config.vision_config._attn_implementation == "eager"
    assert b.encode(random_frames(1, 32, 32)).dtype == torch.float32
    monkeypatch.setenv("SCISSOR_VIZ_DTYPE", "float64")
    assert "SCISSOR_VIZ_DTYPE" in load_backend(str(tiny_llava_folder)).load_error


def test_fallback_for_missing_folder():
    start = time.perf_counter()
    b = load_backend("/nonexistent/llava-folder")
    assert time.perf_counter() - start < 5
    assert isinstance(b, PixelBackend) and not b.can_answer and not b.pretrained
    assert "/nonexistent/llava-folder" in b.load_error and "does not exist" in b.load_error
    assert "SCISSOR_VIZ_CHECKPOINT" in b.load_error and "HF_HOME" in b.load_error
    assert b.load_error in b.unavailable_reason
    with pytest.raises(AnswerUnavailable, match="none is loaded"):
        b.answer(QUESTION, torch.zeros(3, b.hidden_size))


def test_fallback_for_hub_id_when_offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.perf_counter()
    b = load_backend("llava-hf/llava-onevision-qwen2-7b-ov-hf")
    assert time.perf_counter() - start < 10  # no hanging on the network
    assert isinstance(b, PixelBackend)
    assert "not in the Hugging Face cache" in b.load_error and "unreachable" in b.load_error
    assert "llava-hf/llava-onevision-qwen2-7b-ov-hf" in b.load_error
    assert str(tmp_path) not in b.load_error  # the server's cache folder is not shown
    assert hub_reachable() is False


def test_fallback_for_a_folder_that_is_not_llava(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    b = load_backend(str(tmp_path))
    assert isinstance(b, PixelBackend) and "not a supported video LLM" in b.load_error


def test_checkpoint_from_environment(monkeypatch, tiny_llava_folder):
    monkeypatch.delenv("SCISSOR_VIZ_CHECKPOINT", raising=False)
    assert resolve_checkpoint() == loading.default_checkpoint()
    assert loading.default_checkpoint("cuda") == DEFAULT_CHECKPOINT == loading.GPU_CHECKPOINT
    assert loading.default_checkpoint("cpu") == loading.CPU_CHECKPOINT
    monkeypatch.setenv("SCISSOR_VIZ_CHECKPOINT", str(tiny_llava_folder))
    assert resolve_checkpoint() == str(tiny_llava_folder)
    assert resolve_checkpoint("other/model") == "other/model"
    b = load_backend()
    assert isinstance(b, LlavaOnevisionBackend) and b.checkpoint == str(tiny_llava_folder)
    monkeypatch.setenv("SCISSOR_VIZ_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")


def test_lazy_backend_loads_on_demand(tiny_llava_folder):
    lazy = LazyBackend(str(tiny_llava_folder))
    assert not lazy.loaded and lazy._thread is None  # constructing loads nothing
    seen = []
    b = lazy.get(progress=lambda f, m: seen.append(f))
    assert lazy.loaded and isinstance(b, LlavaOnevisionBackend) and lazy.get() is b
    assert seen and seen[-1] == 1.0
    missing = LazyBackend("/nonexistent/folder").start()
    assert isinstance(missing.get(timeout=10), PixelBackend)


# ----------------------------------------------------------------------------- pixels


def test_pixel_backend_shapes_dtype_determinism():
    b = PixelBackend()
    frames = random_frames(2, 70, 150, seed=5)
    x = b.encode(frames)
    assert x.shape == (2, 196, DESCRIPTOR_SIZE) and x.dtype == torch.float32
    assert b.hidden_size == DESCRIPTOR_SIZE and b.tokens_per_frame == 196
    assert torch.isfinite(x).all()
    b.cache.clear()
    assert torch.equal(b.encode(frames), x)
    assert torch.equal(PixelBackend().encode(frames), x)
    assert "pixel descriptors" in b.description and "no model loaded" in b.description
    assert not b.can_answer and not b.pretrained and b.unavailable_reason


def test_pixel_descriptors_tell_images_and_cells_apart():
    a, b = random_frames(1, 64, 64, seed=6)[0], random_frames(1, 64, 64, seed=7)[0]
    assert not np.allclose(frame_descriptors(a), frame_descriptors(b))
    half = np.zeros((384, 384, 3), np.uint8)
    half[:, :192] = (200, 30, 30)
    half[:, 192:] = (30, 30, 200)
    d = frame_descriptors(half).reshape(14, 14, -1)
    assert np.allclose(d[:, 0], d[0, 0], atol=1e-5) and np.allclose(d[:, -1], d[0, -1], atol=1e-5)
    assert not np.allclose(d[0, 0], d[0, -1])  # red cells vs blue cells
    assert d[0, 0, 1] > 0 > d[0, -1, 2]  # a* > 0 (red), b* < 0 (blue)
    stripes = np.zeros((384, 384, 3), np.uint8)
    stripes[:, ::8] = 255  # vertical stripes: horizontal gradients
    s = frame_descriptors(stripes).reshape(14, 14, -1)
    hist = s[7, 7, -8:]
    assert hist.argmax() == 0  # orientation bin of angle ~0 (gradient along x)


def noisy_surfaces(frames: int = 3, seed: int = 0) -> np.ndarray:
    """Frames of two flat surfaces (green left, grey right) under camera noise, and a striped
    patch on the grey: three regions a person sees."""
    rng = np.random.default_rng(seed)
    out = np.empty((frames, 384, 384, 3), np.uint8)
    for t in range(frames):
        image = np.zeros((384, 384, 3), np.float32)
        image[:, :192] = (40, 150, 60)
        image[:, 192:] = (128, 128, 128)
        image[96:192, 250:340:4] = 20  # stripes
        out[t] = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    return out


def test_clip_descriptors_make_a_surface_one_region():
    """The clip's descriptors (texture of flat cells faded, standardised over the clip,
    edge-preserving smoothing) keep a noisy flat surface one region, apart from its neighbour."""
    frames = noisy_surfaces()
    raw = np.stack([frame_descriptors(f) for f in frames])
    tokens = clip_descriptors(raw)
    assert tokens.shape == raw.shape and np.isfinite(tokens).all()
    flat = tokens.reshape(-1, DESCRIPTOR_SIZE)
    assert np.abs(flat.mean(0)).max() < 0.05  # centred over the clip (smoothing moves it little)
    comp = scissor_compress(torch.from_numpy(tokens), tau=0.9)
    counts = comp.spatial_counts.tolist()
    assert all(2 <= c <= 6 for c in counts), counts
    labels = comp.spatial_labels[0].reshape(14, 14)
    assert labels[0, 0] != labels[0, -1]  # green and grey stay apart
    assert len(set(labels[:, :6].flatten().tolist())) == 1  # the green surface: one region


def test_clip_descriptors_group_the_example_at_the_default_retention():
    """On the example clip at 35 %, per-frame descriptors at fixed scales (similarities bunched
    near 1) leave the spatial step almost nothing to merge; the clip's descriptors do merge."""
    clip = load_video(EXAMPLE, 16)
    raw = np.stack([frame_descriptors(f) for f in clip.frames])
    per_frame = {}
    for name, tokens in (("raw", raw), ("clip", clip_descriptors(raw))):
        index = scissor_index(torch.from_numpy(np.ascontiguousarray(tokens)))
        comp = index.compress(index.tau_for_retention(0.35))
        per_frame[name] = comp.spatial_counts.float().mean().item()
    assert per_frame["raw"] > 185 and per_frame["clip"] < 160, per_frame


# ----------------------------------------------------------------------------- CUDA (skipped here)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_encode_and_full_answer_match_stock(tiny_llava_folder, frames, dtype):
    b = load_backend(str(tiny_llava_folder), device="cuda", dtype=dtype, fallback=False)
    assert b.device.type == "cuda" and b.dtype == dtype
    stock = stock_video_features(b, b.preprocess(frames).to("cuda", dtype))
    tokens = b.encode(frames)
    assert tokens.device.type == "cpu" and tokens.dtype == torch.float32
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(tokens.reshape(-1, b.hidden_size), stock[:-1].float().cpu(), **tol)
    n = 5
    ids = b.stock_input_ids(QUESTION, len(frames)).to("cuda")
    with torch.inference_mode():
        out = b.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values_videos=b.preprocess(frames).to("cuda", dtype)[None],
            **b.generation_kwargs(n, min_new_tokens=n),
        )
    ans = b.answer(QUESTION, stock[:-1], max_new_tokens=n, min_new_tokens=n)
    assert ans.token_ids == out.sequences[0, ids.shape[1] :].tolist()
    torch.testing.assert_close(ans.first_logits, out.logits[0][0].float().cpu(), rtol=0, atol=0)
    assert 0 < ans.prefill_seconds <= ans.generate_seconds


# ----------------------------------------------------------------------------- hosting


@pytest.fixture
def recorded_loads(monkeypatch):
    """load_backend replaced by a recorder that returns pixel descriptors at once."""
    calls: list[str] = []

    def fake(checkpoint=None, device=None, progress=None, **kwargs):
        calls.append(checkpoint)
        return PixelBackend()

    monkeypatch.setattr(loading, "load_backend", fake)
    return calls


def test_only_the_configured_checkpoint_loads_by_default(
    tiny_llava_folder, tmp_path, monkeypatch, recorded_loads
):
    monkeypatch.delenv(ALLOW_ANY_ENV, raising=False)
    registry = BackendRegistry(CheckpointPolicy.from_env("owner/configured"))
    assert not registry.policy.allow_any and registry.checkpoint == "owner/configured"
    requests = [str(tiny_llava_folder), str(tmp_path / "missing"), "someone/unknown", "../x"]
    for name in requests:  # an existing folder, a missing one, a hub id, a relative path
        for call in (registry.get, registry.start):
            with pytest.raises(CheckpointRefused) as refused:
                call(name)
            assert str(refused.value) == REFUSED  # one message: it tells nothing about `name`
        status = registry.status(name)
        assert status.state == "refused" and status.message == REFUSED
        assert not registry.loading(name)
    assert recorded_loads == [] and registry.held() == []  # nothing started loading
    backend = registry.get()
    assert registry.get(" owner/configured ") is backend and registry.get("") is backend
    assert recorded_loads == ["owner/configured"] and registry.status().state == "ready"


def test_the_operator_may_allow_any_checkpoint(tiny_llava_folder, monkeypatch):
    monkeypatch.setenv(ALLOW_ANY_ENV, "1")
    registry = BackendRegistry(CheckpointPolicy.from_env("owner/configured"))
    assert registry.policy.allow_any
    assert registry.status(str(tiny_llava_folder)).state == "idle"  # status loads nothing
    backend = registry.get(str(tiny_llava_folder))
    assert isinstance(backend, LlavaOnevisionBackend)
    assert registry.status(str(tiny_llava_folder)).backend is backend
    assert not CheckpointPolicy("a/b", allow_any=False).allow_any


def test_remote_code_is_never_trusted(tiny_llava_folder, monkeypatch):
    import transformers

    seen = []
    for cls in (
        transformers.AutoConfig,
        transformers.AutoTokenizer,
        transformers.LlavaOnevisionForConditionalGeneration,
    ):
        original = cls.from_pretrained

        def spy(*args, _original=original, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    load_backend(str(tiny_llava_folder), fallback=False)
    assert len(seen) >= 3 and set(seen) == {False}  # transformers may ask again inside


def test_registry_holds_at_most_max_backends(monkeypatch, recorded_loads):
    registry = BackendRegistry(CheckpointPolicy("a/default", allow_any=True), max_backends=2)
    first = registry.get("a/one")
    registry.get("a/two")
    assert registry.get("a/one") is first  # held: not loaded again
    registry.get("a/three")  # the least recently used (a/two) is freed
    assert registry.held() == ["a/one", "a/three"]
    assert recorded_loads == ["a/one", "a/two", "a/three"]
    monkeypatch.setenv(MAX_BACKENDS_ENV, "3")
    assert BackendRegistry(CheckpointPolicy("a/b")).max_backends == 3
    monkeypatch.delenv(MAX_BACKENDS_ENV)
    assert BackendRegistry(CheckpointPolicy("a/b")).max_backends == 2
    monkeypatch.setenv(MAX_BACKENDS_ENV, "0")
    with pytest.raises(ValueError, match=MAX_BACKENDS_ENV):
        BackendRegistry(CheckpointPolicy("a/b"))


def test_a_failed_load_is_retried_after_the_back_off(tiny_llava_folder, tmp_path):
    """The model is missing at start-up (a network blip); later requests get it back."""
    now = [0.0]
    folder = tmp_path / "arrives-later"
    registry = BackendRegistry(
        CheckpointPolicy(str(folder)), retry_after=60, clock=lambda: now[0], device="cpu"
    )
    fallback = registry.get()
    assert isinstance(fallback, PixelBackend) and fallback.load_error
    status = registry.status()
    assert status.state == "fallback" and status.retry_in == 60
    shutil.copytree(tiny_llava_folder, folder)  # the network is back
    now[0] = 30.0
    assert registry.get() is fallback  # within the back-off: no new attempt
    now[0] = 61.0
    assert registry.status().retry_in == 0
    backend = registry.get()  # the next request retries, and waits for it
    assert isinstance(backend, LlavaOnevisionBackend)
    assert registry.status().state == "ready" and registry.status().retry_in is None


def test_attention_maps_stay_within_the_memory_budget(tiny_backend, frames, monkeypatch):
    tokens = tiny_backend.encode(frames)
    vision = tiny_backend.vision_attention(frames, key="budget-clip")
    monkeypatch.setenv(ATTENTION_BUDGET_ENV, "1")  # 1 MiB: below 4 heads x ~610^2 x 4 bytes
    with pytest.raises(ValueError, match="FastV needs the attention map over .* budget"):
        tiny_backend.llm_attention(QUESTION, tokens)
    with pytest.raises(ValueError, match="VisionZip needs"):  # one frame: 4 x 729^2 x 4 bytes
        tiny_backend.vision_attention(frames, key="budget-clip-2")
    monkeypatch.setenv(ATTENTION_BUDGET_ENV, "25")  # a frame at a time: 3 x 8.1 MiB (batch 2 -> 1)
    torch.testing.assert_close(tiny_backend.vision_attention(frames, key="budget-clip-3"), vision)
    monkeypatch.setenv(ATTENTION_BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match=ATTENTION_BUDGET_ENV):
        tiny_backend.llm_attention(QUESTION, tokens)


# ----------------------------------------------------------------------------- every family


FAMILIES = ["llava_next_video", "qwen2_5_vl", "qwen3_vl", "internvl", "smolvlm"]
PER_RUN = ("qwen3_vl", "internvl", "smolvlm")  # a run of placeholders per frame (Qwen3: group)


@pytest.mark.parametrize(
    "family, size, shape",
    [
        ("llava_next_video", (64, 64), (4, 8, 8, 1)),  # 4 frames of 8 x 8
        ("llava_next_video", (48, 90), (4, 8, 8, 1)),  # short side 64, cropped: still 8 x 8
        ("smolvlm", (64, 64), (4, 8, 8, 1)),
        ("qwen2_5_vl", (64, 64), (4, 8, 8, 2)),  # 8 frames: 4 pairs of 8 x 8
        ("qwen2_5_vl", (48, 88), (4, 6, 11, 2)),  # a non-square 6 x 11 grid per pair
        ("qwen3_vl", (64, 64), (4, 8, 8, 2)),
        ("qwen3_vl", (48, 88), (4, 6, 11, 2)),
        ("internvl", (64, 64), (4, 8, 8, 1)),
        ("internvl", (48, 90), (4, 8, 8, 1)),  # squashed to the tower's 64 x 64
    ],
)
def test_each_family_encodes_its_own_grid(family, size, shape):
    from scissor_viz.pictures.grid import TokenGrid

    twin, backend = twin_backend(family)
    frames = random_frames(8 if family.startswith("qwen") else 4, *size, seed=5)
    groups, rows, cols, per_group = shape
    assert backend.grid_for(frames) == TokenGrid(rows, cols, per_group)
    tokens = backend.encode(frames)
    assert tokens.shape == (groups, rows * cols, backend.hidden_size)
    # exactly the patch's own features of the processor outputs (the model's vision path)
    inputs = backend.pixel_inputs(frames)
    with torch.inference_mode():
        (grid,) = backend.model.scissor.grids(**inputs)
    torch.testing.assert_close(tokens, grid.float(), rtol=0, atol=0)
    # the pixel fallback on the same grid
    pixels = PixelBackend(grid=backend.grid_for(frames)).encode(frames)
    assert pixels.shape[:2] == tokens.shape[:2]


def test_qwen_preprocessing_equals_the_twins_processor_outputs(without_torchvision):
    from tests.tiny_vlms import normalized, qwen_patches

    twin, backend = twin_backend("qwen2_5_vl")
    frames = random_frames(6, 64, 64, seed=2)
    ours = backend.pixel_inputs(frames)
    patches = qwen_patches(normalized(frames), 4, 2, 2)
    torch.testing.assert_close(ours["pixel_values_videos"], patches, rtol=0, atol=1e-6)
    assert ours["video_grid_thw"].tolist() == [[3, 16, 16]]


def twin_clip(family: str, frames: np.ndarray):
    """The twin's backend and an analysis of ``frames`` on it (the app's path)."""
    from scissor_viz.analysis import VideoAnalysis
    from scissor_viz.video import VideoClip, VideoInfo

    twin, backend = twin_backend(family)
    t, h, w = frames.shape[:3]
    info = VideoInfo(Path("twin.mp4"), t, float(t), 1.0, w, h, "h264")
    clip = VideoClip(frames, np.arange(float(t)), np.arange(t), info, key=f"twin-{family}")
    return backend, VideoAnalysis.from_clip(clip, backend)


@pytest.mark.slow  # a family other than OneVision (tests/conftest.py)
def test_qwen3_vl_keeps_its_deepstack_grids_with_the_tokens():
    """encode's one vision pass gives the tokens and the DeepStack grids: exactly the patch's
    own ``adapter.encode`` of the processor outputs, cached as one entry (its bytes counted in
    the cache's budget), and held by the analysis."""
    backend, analysis = twin_clip("qwen3_vl", random_frames(6, 48, 88, seed=4))
    frames = analysis.clip.frames
    encoded = backend.encoded(frames, key="twin-qwen3_vl")
    assert encoded.tokens is analysis.tokens and encoded.layers == analysis.layers
    assert len(encoded.layers) == backend.layer_levels == 2
    with torch.inference_mode():
        ((grid, layers),) = backend.model.scissor.adapter.encode(backend.pixel_inputs(frames))
    torch.testing.assert_close(encoded.tokens, grid.float(), rtol=0, atol=0)
    for mine, stock in zip(encoded.layers, layers, strict=True):
        assert mine.shape == encoded.tokens.shape[:2] + stock.shape[-1:]
        torch.testing.assert_close(mine, stock.float(), rtol=0, atol=0)
    held = sum(x.untyped_storage().nbytes() for x in (encoded.tokens, *encoded.layers))
    assert backend.cache.nbytes == held  # one entry: the tokens and both levels
    assert analysis.nbytes()["layers"] == held - encoded.tokens.untyped_storage().nbytes() > 0
    assert backend.encode(frames, key="twin-qwen3_vl") is encoded.tokens  # a hit, not a pass
    assert backend.cache.stats.misses == 1


@pytest.mark.slow  # a family other than OneVision (tests/conftest.py)
@pytest.mark.parametrize("retention", [0.2, 0.05])
def test_qwen3_vl_answer_is_the_patched_models_answer(retention):
    """The app's Qwen3-VL answer from SCC's compression (its tokens, their representatives'
    runs and positions, each DeepStack level merged with SCC's partition) is the patched
    model's: ``apply_patch(model, tau=...)`` at the page's tau + ``generate`` on the same
    frames' pixels, in the stock prompt: same K, same prompt length, same ids, same first
    logits."""
    from scissor_viz import apply_patch

    n = 4
    backend, analysis = twin_clip("qwen3_vl", random_frames(6, 48, 88, seed=4))
    comp = analysis.compress(retention=retention)
    assert comp.num_tokens < analysis.num_total
    ours = analysis.answer(QUESTION, comp, max_new_tokens=n)
    grid, model = analysis.grid, backend.model
    shape = (analysis.tokens.shape[0], grid.rows, grid.cols)
    inputs = {**backend.video_inputs(QUESTION, shape), **backend.pixel_inputs(analysis.clip.frames)}
    apply_patch(model, tau=comp.tau)
    try:
        with torch.inference_mode():
            stock = model.generate(**inputs, **backend.generation_kwargs(n))
        record = model.scissor.last[0]
    finally:
        apply_patch(model, retention=1.0)  # the backend's setting
    assert record.tau == comp.tau and record.videos[0].num_tokens == comp.num_tokens
    assert record.length_after == ours.prompt_tokens
    assert ours.token_ids == stock.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    torch.testing.assert_close(ours.first_logits, stock.logits[0][0].float(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # a family other than OneVision (tests/conftest.py)
def test_qwen3_vl_answers_need_their_deepstack_features():
    """DeepStack changes the twin's answer (so the equalities above test it), and an answer
    without the levels, or with levels for other tokens, is refused rather than made up."""
    backend, analysis = twin_clip("qwen3_vl", random_frames(6, 48, 88, seed=4))
    comp = analysis.compress(retention=0.2)
    shape = (analysis.tokens.shape[0], analysis.grid.rows, analysis.grid.cols)
    ask = dict(max_new_tokens=1, source=comp.representatives, shape=shape)
    layers = token_layers(analysis.layers, comp)
    right = backend.answer(QUESTION, comp.tokens, layers=layers, **ask)
    zeros = backend.answer(
        QUESTION, comp.tokens, layers=[torch.zeros_like(x) for x in layers], **ask
    )
    assert not torch.allclose(right.first_logits, zeros.first_logits, atol=1e-3)
    assert torch.equal(right.first_logits, analysis.answer(QUESTION, comp, 1).first_logits)
    with pytest.raises(ValueError, match="DeepStack"):
        backend.answer(QUESTION, comp.tokens, **ask)
    with pytest.raises(ValueError, match="DeepStack"):
        backend.answer(QUESTION, comp.tokens, layers=[x[:-1] for x in layers], **ask)
    _, other = twin_backend("qwen2_5_vl")  # no DeepStack: no levels taken
    with pytest.raises(ValueError, match="0 level"):
        other.answer(QUESTION, torch.zeros(len(comp.tokens), other.hidden_size), layers=layers)


@pytest.mark.slow  # a family other than OneVision (tests/conftest.py)
def test_other_methods_carry_deepstack_by_their_assignment():
    """The rule for other reductions: a token a selection kept has its own DeepStack
    features, a merged or pooled token the mean of the tokens it stands for; SCC's are merged
    with its partition exactly as the patch merges them (``model.scissor.video_tokens``)."""
    backend, analysis = twin_clip("qwen3_vl", random_frames(6, 48, 88, seed=4))
    flat = [x.flatten(0, 1) for x in analysis.layers]
    for method in ("random", "visionzip", "pool", "tome"):
        reduction, _ = analysis.reduce(method, 0.3)
        owner = reduction.assignment.flatten()
        kept = reduction.kept_index if reduction.kept_index is not None else owner[:0]
        for mine, level in zip(token_layers(analysis.layers, reduction), flat, strict=True):
            assert mine.shape == (reduction.num_tokens, level.shape[1])
            for k in range(reduction.num_tokens):
                want = level[kept[k]] if k < len(kept) else level[owner == k].mean(0)
                torch.testing.assert_close(mine[k], want, rtol=1e-5, atol=1e-6)
    comp = analysis.compress(retention=0.2)
    spliced = backend.model.scissor.video_tokens(analysis.tokens, comp, analysis.layers)
    for mine, patch in zip(token_layers(analysis.layers, comp), spliced.layers, strict=True):
        assert torch.equal(mine, patch)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_familys_full_answer_equals_stock_generate(family):
    twin, backend = twin_backend(family)
    frames = random_frames(4, 64, 64, seed=7)
    tokens = backend.encode(frames)
    n = 4
    shape = (tokens.shape[0], 8, 8)  # Qwen's grid follows the frames: the shape is given
    layers = backend.encoded(frames).layers  # Qwen3-VL's DeepStack grids, all of them
    ours = backend.answer(
        QUESTION, tokens, max_new_tokens=n, min_new_tokens=n, shape=shape, layers=layers
    )
    pixels = backend.pixel_inputs(frames)
    pixels.pop("input_ids", None)  # InternVL's: which prompt the frames belong to
    if family in PER_RUN:  # per-frame runs: the backend's own stock prompt
        ids = backend.video_inputs(QUESTION, shape)["input_ids"]
    else:
        count = tokens.shape[0] * tokens.shape[1]
        prompt = backend.build_prompt(QUESTION)
        prompt = prompt.replace(backend.video_token, backend.video_token * count)
        ids = backend.tokenizer(prompt, return_tensors="pt").input_ids
    stock_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **pixels}
    if family.startswith("qwen"):
        stock_inputs["mm_token_type_ids"] = (ids == backend.video_token_id).long() * 2
    with torch.inference_mode():
        stock = backend.model.generate(
            **stock_inputs, **backend.generation_kwargs(n, min_new_tokens=n)
        )
    assert ours.token_ids == stock.sequences[0, ids.shape[1] :].tolist()
    torch.testing.assert_close(ours.first_logits, stock.logits[0][0].float(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # a family other than OneVision (tests/conftest.py)
@pytest.mark.parametrize("family", ["llava_onevision", *FAMILIES])
def test_the_sweep_runs_on_each_family(family, tiny_backend, tmp_path):
    """The sweep end to end on the family's tiny twin (a real clip, decoded): every method's
    row counts tokens on the family's own grid, and SCC reaches its retention there."""
    from scissor_viz.sweep import backend_tokens, read_rows, run_sweep

    backend = tiny_backend if family == "llava_onevision" else twin_backend(family)[1]
    methods = ["scc", "pool", "random", "visionzip", "tome"]
    rows = run_sweep(
        [EXAMPLE],
        tmp_path,
        frames=4,
        retentions=[0.25],
        methods=methods,
        tokens_fn=backend_tokens(backend=backend),
        progress=False,
        plots=False,
    )
    assert read_rows(tmp_path / "results.csv") == rows
    assert sorted(r["method"] for r in rows) == sorted(methods)
    clip = load_video(EXAMPLE, 4)
    grid = backend.grid_for(clip.frames)
    total = grid.groups(len(clip.frames)) * grid.tokens_per_frame
    for row in rows:
        assert row["backend"] == backend.name and row["frames_used"] == 4
        assert 0 < row["num_tokens"] < total
        assert row["retention_reached"] == pytest.approx(row["num_tokens"] / total)
    scc = next(r for r in rows if r["method"] == "scc")
    assert scc["tau"] is not None and abs(scc["retention_reached"] - 0.25) < 0.1


@pytest.mark.parametrize("family", FAMILIES)
def test_video_analysis_runs_on_each_family(family):
    """The app's analysis end to end: tokens on the family's grid, SCC, the answers (full,
    SCC, a selection and two methods whose tokens are not in frame order: VisionZip's dominant
    first, ToMe's) through the patched model; Qwen on a non-square grid."""
    backend, analysis = twin_clip(family, random_frames(6, 48, 88, seed=4))
    grid = analysis.grid
    assert analysis.tokens.shape[:2] == (grid.groups(6), grid.tokens_per_frame)
    if family.startswith("qwen"):
        assert (grid.rows, grid.cols, grid.frames_per_group) == (6, 11, 2)
    assert backend.can_answer and backend.unavailable_reason is None
    comp = analysis.compress(retention=0.2)
    assert 0 < comp.num_tokens < analysis.num_total
    full = analysis.answer("What is here?")
    mine = analysis.answer("What is here?", comp)
    assert full.visual_tokens == analysis.num_total and mine.visual_tokens == comp.num_tokens
    assert mine.prompt_tokens - full.prompt_tokens == comp.num_tokens - analysis.num_total
    for method in ("random", "visionzip", "tome"):
        reduction, _ = analysis.reduce(method, 0.3)
        answer = analysis.answer("What is here?", reduction)
        assert answer.visual_tokens == reduction.num_tokens
        assert (
            answer.prompt_tokens - full.prompt_tokens == reduction.num_tokens - analysis.num_total
        )


def test_token_grid_helpers_take_rows_and_cols():
    from scissor_viz.pictures.grid import TokenGrid, cell_index, grid_shape, label_grid, token_at

    grid = TokenGrid(16, 22, 2)
    assert grid.tokens_per_frame == 352 and grid.groups(16) == 8 and grid.groups(5) == 3
    index = cell_index(448, 616, 16, 22)  # 28 x 28 px cells
    assert index.shape == (448, 616) and index.max() == 351
    assert index[27, 27] == 0 and index[28, 28] == 23 and index[447, 615] == 351
    assert token_at(30, 600, 448, 616, 16, 22) == 1 * 22 + 21
    assert cell_index(10, 10)[9, 9] == 195  # square 14 x 14 stays the default
    assert grid_shape(352, 22) == (16, 22) and grid_shape(196) == (14, 14)
    assert label_grid(np.arange(352), cols=22).shape == (16, 22)
    with pytest.raises(ValueError, match="not a square"):
        label_grid(np.arange(352))
    with pytest.raises(ValueError, match="do not fill rows"):
        grid_shape(352, 21)
    with pytest.raises(ValueError, match="positive"):
        TokenGrid(0, 4)

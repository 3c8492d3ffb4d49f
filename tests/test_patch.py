"""scissor_viz.apply_patch on tiny random twins of LLaVA-OneVision, LLaVA-NeXT-Video, Qwen2.5-VL,
Qwen3-VL, InternVL and SmolVLM: stock behaviour when nothing is compressed, SCC's exact tokens
(in the run of their representative's frame where a video is a run per frame, and for Qwen at
their representatives' positions) entering the language model when something is, and the
generate / forward surface.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from scissor_viz import apply_patch, remove_patch
from scissor_viz.patch import ScissorState, SplicedTokens, adapter_for, representatives
from scissor_viz.scc import scissor_compress, tau_for_retention
from tests.tiny_vlms import PREFIX, build_twins

FAMILIES = [
    "llava_onevision",
    "llava_next_video",
    "qwen2_5_vl",
    "qwen3_vl",
    "internvl",
    "smolvlm",
]
QUESTIONS = ["What is happening in this video?", "How many people?"]
GREEDY = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
LOGITS = {"return_dict_in_generate": True, "output_logits": True}


@pytest.fixture(scope="session")
def twins():
    return build_twins()


@pytest.fixture(params=FAMILIES)
def twin(request, twins):
    twin = twins[request.param]
    yield twin
    remove_patch(twin.model)  # whatever a test did


@contextmanager
def patched(model, **settings):
    apply_patch(model, **settings)
    try:
        yield model.scissor
    finally:
        remove_patch(model)


def without_pixels(inputs: dict, key: str = "pixel_values_videos") -> dict:
    return {k: v for k, v in inputs.items() if k != key}


def full_tokens(model, inputs: dict) -> list[SplicedTokens]:
    """Every video's own features (and DeepStack grids), uncompressed: the splice path at
    retention 1."""
    with torch.no_grad():
        return [
            SplicedTokens(g.flatten(0, 1), layers=tuple(x.flatten(0, 1) for x in layers))
            for g, layers in adapter_for(model).encode(inputs)
        ]


def language_model(model):
    inner = model.model
    return getattr(inner, "language_model", None) or inner.text_model


class Capture:
    """The inputs_embeds / attention_mask / position_ids of every language-model call."""

    def __init__(self, model):
        self.calls: list[dict] = []
        self.handle = language_model(model).register_forward_pre_hook(self.grab, with_kwargs=True)

    def grab(self, _module, _args, kwargs):
        keys = ("inputs_embeds", "attention_mask", "position_ids")
        self.calls.append({k: kwargs.get(k) for k in keys})

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.handle.remove()


# ----------------------------------------------------------------------------- stock equality


@pytest.mark.parametrize("batch", [1, 2])
def test_retention_one_is_stock(twin, batch):
    """retention=1 gives the stock ids and logits, greedy and sampled with a fixed seed."""
    model, inputs = twin.model, twin.inputs(QUESTIONS[:batch], [0, 1][:batch])
    for kwargs in (GREEDY, {**GREEDY, "do_sample": True, "top_k": 0}):
        torch.manual_seed(0)
        stock = model.generate(**inputs, **kwargs, **LOGITS)
        with patched(model, retention=1.0) as scissor:
            torch.manual_seed(0)
            out = model.generate(**inputs, **kwargs, **LOGITS)
            assert [r.tokens_after for r in scissor.last] == [r.tokens_before for r in scissor.last]
        assert torch.equal(out.sequences, stock.sequences)
        assert torch.equal(out.logits[0], stock.logits[0])


@pytest.mark.parametrize("batch", [1, 2])
def test_uncompressed_splice_is_stock(twin, batch):
    """The splice itself (the model's own features given as video_tokens, every prompt rebuilt
    from inputs_embeds, positions from the layout) reproduces stock generate: greedy, sampled
    and (batched) beam search."""
    model, inputs = twin.model, twin.inputs(QUESTIONS[:batch], [0, 1][:batch])
    given = full_tokens(model, inputs)
    modes = [GREEDY, {**GREEDY, "do_sample": True, "top_k": 0}]
    if batch > 1:
        modes.append({**GREEDY, "num_beams": 3, "num_return_sequences": 2})
    for kwargs in modes:
        torch.manual_seed(0)
        stock = model.generate(**inputs, **kwargs, **LOGITS)
        with patched(model, retention=0.5):
            torch.manual_seed(0)
            out = model.generate(
                **without_pixels(inputs, twin.pixels), video_tokens=given, **kwargs, **LOGITS
            )
        assert torch.equal(out.sequences, stock.sequences)
        torch.testing.assert_close(out.logits[0], stock.logits[0], rtol=1e-5, atol=1e-5)


def test_remove_and_double_patch(twin):
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [2])
    stock_class = type(model)
    stock = model.generate(**inputs, **GREEDY, **LOGITS)
    assert apply_patch(model, retention=0.1) is model
    state = model.scissor
    apply_patch(model, tau=0.9)  # patching twice only changes the settings
    assert model.scissor is state and state.tau == 0.9 and state.retention is None
    assert type(model).__mro__[1] is stock_class  # one layer, not two
    assert type(model).__name__ == stock_class.__name__
    model.generate(**inputs, **GREEDY)
    assert state.last[0].tokens_after < state.last[0].tokens_before
    assert remove_patch(model) is model
    assert type(model) is stock_class and not hasattr(model, "scissor")
    remove_patch(model)  # harmless
    out = model.generate(**inputs, **GREEDY, **LOGITS)
    assert torch.equal(out.sequences, stock.sequences)
    assert torch.equal(out.logits[0], stock.logits[0])


def test_top_level_two_line_api(twin):
    """docs/patch.md's two lines, from the package's top level: ``scissor_viz.apply_patch``
    then the model's own generate compresses; ``scissor_viz.remove_patch`` is stock again."""
    import scissor_viz
    import scissor_viz.patch

    assert {"apply_patch", "remove_patch"} <= set(scissor_viz.__all__)
    assert scissor_viz.apply_patch is scissor_viz.patch.apply_patch
    assert scissor_viz.remove_patch is scissor_viz.patch.remove_patch
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [1])
    stock = model.generate(**inputs, **GREEDY, **LOGITS)

    assert scissor_viz.apply_patch(model, retention=0.1) is model
    out = model.generate(**inputs, max_new_tokens=4)
    record = model.scissor.last[0]
    assert record.tokens_after < record.tokens_before and record.tau is not None
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])

    assert scissor_viz.remove_patch(model) is model and not hasattr(model, "scissor")
    again = model.generate(**inputs, **GREEDY, **LOGITS)
    assert torch.equal(again.sequences, stock.sequences)


def test_generate_under_inference_mode(twin):
    """``torch.inference_mode()`` around generate (as serving code does) compresses exactly as
    ``no_grad``: SCC runs on the inference-mode features (tau search included)."""
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 1])
    with patched(model, retention=0.2) as scissor:
        with torch.no_grad():
            plain = model.generate(**inputs, **GREEDY, **LOGITS)
        kept = [r.tokens_after for r in scissor.last]
        with torch.inference_mode():
            inference = model.generate(**inputs, **GREEDY, **LOGITS)
        assert [r.tokens_after for r in scissor.last] == kept
        assert all(r.tokens_after < r.tokens_before for r in scissor.last)
    assert torch.equal(inference.sequences, plain.sequences)
    torch.testing.assert_close(inference.logits[0], plain.logits[0], rtol=1e-5, atol=1e-5)


def test_unsupported_model_names_the_supported_classes(twins):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=32,
        )
    )
    with pytest.raises(TypeError) as err:
        apply_patch(text, retention=0.1)
    for name in (
        "Qwen2ForCausalLM",
        "LlavaOnevisionForConditionalGeneration",
        "LlavaNextVideoForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "InternVLForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
    ):
        assert name in str(err.value)
    assert type(text) is Qwen2ForCausalLM and not hasattr(text, "scissor")


def test_settings(twins):
    model = twins["llava_next_video"].model
    with pytest.raises(ValueError, match="exactly one"):
        apply_patch(model)
    with pytest.raises(ValueError, match="exactly one"):
        apply_patch(model, retention=0.5, tau=0.9)
    with pytest.raises(ValueError, match="retention"):
        apply_patch(model, retention=1.5)
    assert not hasattr(model, "scissor")
    with patched(model, retention=0.1) as scissor:
        assert isinstance(scissor, ScissorState)
        scissor.tau = 0.8
        assert (scissor.tau, scissor.retention) == (0.8, None)
        scissor.retention = 0.25
        assert (scissor.tau, scissor.retention) == (None, 0.25)
        with pytest.raises(ValueError):
            scissor.retention = 0


# ----------------------------------------------------------------------------- compression


def new_prompt(twin, inputs: dict, b: int, reps: torch.Tensor) -> list[tuple[str, int]]:
    """What the patch's prompt b should be, from the stock prompt and the representatives of
    the K compressed tokens: per position ("text", stock index), ("video", token index) or
    ("tail", stock index). The tokens take the place of the video's placeholder runs, each in
    the run of its representative (a single-run video: all of them), in order; OneVision's
    newline (the run's last placeholder) follows them."""
    ids = inputs["input_ids"][b].tolist()
    valid = inputs["attention_mask"][b].bool().tolist()
    holders = [p for p, i in enumerate(ids) if valid[p] and i == twin.video_token_id]
    ordinal = {p: o for o, p in enumerate(holders)}
    tail = 1 if twin.family == "llava_onevision" else 0
    out, reps = [], reps.tolist()
    for p, i in enumerate(ids):
        if not valid[p]:
            continue
        if p not in ordinal:
            out.append(("text", p))
            continue
        if p > 0 and valid[p - 1] and ids[p - 1] == twin.video_token_id:
            continue  # not the first placeholder of its run
        stop = p
        while stop < len(ids) and ids[stop] == twin.video_token_id:
            stop += 1
        lo, hi = ordinal[p], ordinal[stop - 1] + 1  # the run's placeholder ordinals
        out += [("video", j) for j, r in enumerate(reps) if lo <= r < hi]
        if tail and hi == len(holders):
            out.append(("tail", stop - 1))
    return out


def test_language_model_reads_scc_tokens(twin):
    """At retention < 1 each prompt the language model reads is exactly the stock prompt with
    each video's placeholders replaced by scissor_compress(the model's own video features,
    retention=r).tokens, in order, each in the run of its representative's frame (a single-run
    video: all in its run; + OneVision's newline): text unchanged, shorter by exactly the
    removed count."""
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 1])
    embed = model.get_input_embeddings()
    with patched(model, retention=0.25) as scissor, Capture(model) as capture:
        grids = scissor.grids(**inputs)
        model.generate(**inputs, **GREEDY)
        prefill = capture.calls[0]
        records = scissor.last
    embeds, mask = prefill["inputs_embeds"], prefill["attention_mask"]
    stock_valid = inputs["attention_mask"].sum(1)
    frames_with_tokens = set()
    for b, (grid, record) in enumerate(zip(grids, records)):
        comp = scissor_compress(grid.clone(), retention=0.25)  # the engine's one-shot call
        assert record.tau == comp.tau
        expected = comp.tokens  # (K, d)
        assert torch.equal(scissor_compress(grid.clone(), comp.tau).tokens, expected)
        k, n = len(expected), grid.shape[0] * grid.shape[1]
        assert k < n and record.videos[0].num_tokens == k
        valid = int(mask[b].sum())
        assert valid == int(stock_valid[b]) - (n - k) == record.length_after
        row = embeds[b, embeds.shape[1] - valid :]  # left padding dropped
        layout = new_prompt(twin, inputs, b, comp.representatives)
        assert len(layout) == valid
        ids = inputs["input_ids"][b]
        for (kind, i), got in zip(layout, row):
            if kind == "text":
                assert torch.equal(got, embed(ids[i]))
            elif kind == "video":
                assert torch.equal(got, expected[i])
            else:
                assert torch.equal(got, model.model.image_newline)
        frames_with_tokens |= set((comp.representatives // grid.shape[1]).tolist())
    if twin.family in ("qwen3_vl", "internvl", "smolvlm"):  # a run per frame: several filled
        assert len(frames_with_tokens) > 1


def test_batch_of_different_lengths_matches_each_alone(twin):
    """Two videos compressed (at one tau) to different lengths, left-padded in one batch: each
    prompt generates what it generates alone."""
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 3])
    with torch.no_grad():
        grid = adapter_for(model).grids(twin.inputs(QUESTIONS[:1], [0]))[0]
    tau = tau_for_retention(grid, 0.2)
    kwargs = {**GREEDY, "max_new_tokens": 8, "min_new_tokens": 8, **LOGITS}
    with patched(model, tau=tau) as scissor:
        batch = model.generate(**inputs, **kwargs)
        kept = [r.tokens_after for r in scissor.last]
        assert kept[0] != kept[1], "the test needs videos that compress to different lengths"
        for b, seed in enumerate([0, 3]):
            alone = model.generate(**twin.inputs(QUESTIONS[b : b + 1], [seed]), **kwargs)
            assert scissor.last[0].tokens_after == kept[b]
            new = batch.sequences[b, inputs["input_ids"].shape[1] :]
            assert torch.equal(new, alone.sequences[0, -len(new) :])
            torch.testing.assert_close(batch.logits[0][b], alone.logits[0][0], rtol=1e-4, atol=1e-4)


def test_generate_returns_the_callers_prompt(twin):
    """Sequences start with the caller's input_ids (as stock), whatever was spliced; beams and
    several return sequences keep working."""
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 1])
    length = inputs["input_ids"].shape[1]
    with patched(model, retention=0.1):
        out = model.generate(**inputs, **GREEDY, num_beams=3, num_return_sequences=2)
        rest = {k: v for k, v in inputs.items() if k != "input_ids"}
        positional = model.generate(inputs["input_ids"], **rest, **GREEDY)
    assert out.shape == (4, length + 4)
    assert torch.equal(out[:, :length], inputs["input_ids"].repeat_interleave(2, 0))
    assert positional.shape == (2, length + 4)


def test_streaming(twin):
    """A streamer sees every new token as it is generated, with the patch on."""
    from transformers import TextIteratorStreamer

    class Collect:
        def __init__(self):
            self.puts = []

        def put(self, value):
            self.puts.append(value.flatten())

        def end(self):
            self.puts.append(None)

    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [4])
    with patched(model, retention=0.1) as scissor:
        collect = Collect()
        out = model.generate(**inputs, **GREEDY, streamer=collect)
        new = out[0, inputs["input_ids"].shape[1] :]
        assert collect.puts[-1] is None
        assert len(collect.puts[0]) == scissor.last[0].length_after  # the prompt it read
        assert torch.equal(torch.cat(collect.puts[1:-1]), new)

        streamer = TextIteratorStreamer(twin.tokenizer, skip_prompt=True)
        thread = threading.Thread(
            target=model.generate, kwargs={**inputs, **GREEDY, "streamer": streamer}
        )
        thread.start()
        text = "".join(streamer)
        thread.join()
    assert text == twin.tokenizer.decode(new)


def test_forward_with_labels(twin):
    """Plain forward (scoring / loss): labels shrink with the video runs, so the loss is the
    cross-entropy of the shortened logits against the shortened labels; gradients reach the
    vision tower through the merged tokens. With the uncompressed splice it is the stock loss."""
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [5])
    ids = inputs["input_ids"]
    labels = ids.masked_fill(ids == twin.video_token_id, -100)
    labels[:, : len(twin.tokenizer.encode(PREFIX))] = -100
    stock = model(**inputs, labels=labels)
    given = full_tokens(model, inputs)
    with patched(model, retention=0.2) as scissor:
        same = model(**without_pixels(inputs, twin.pixels), video_tokens=given, labels=labels)
        torch.testing.assert_close(same.logits, stock.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(same.loss, stock.loss, rtol=1e-6, atol=1e-6)

        model.zero_grad()
        out = model(**inputs, labels=labels)
        record = scissor.last[0]
    removed = record.tokens_before - record.tokens_after
    assert out.logits.shape[1] == ids.shape[1] - removed
    reps = record.videos[0].compression.representatives
    layout = new_prompt(twin, inputs, 0, reps)
    short = torch.tensor([[labels[0, i] if kind == "text" else -100 for kind, i in layout]])
    expected = F.cross_entropy(out.logits[0, :-1], short[0, 1:], ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    grads = [p.grad for p in twin.vision.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()


# ----------------------------------------------------------------------------- positions


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_positions_follow_representatives(twins, family):
    """Qwen2.5-VL / Qwen3-VL: each merged token sits at the stock M-RoPE position of its
    representative (Qwen3-VL: in the run of its representative's group, after that group's
    timestamp), all text keeps its stock positions, and decoding continues at the stock
    positions (the same as the unpatched model's decoding steps)."""
    twin = twins[family]
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 1])
    stock_positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )  # (3, B, L)
    with Capture(model) as stock:
        model.generate(**inputs, **GREEDY)
    with patched(model, retention=0.2) as scissor, Capture(model) as capture:
        grids = scissor.grids(**inputs)
        model.generate(**inputs, **GREEDY)
        records = scissor.last
    positions = capture.calls[0]["position_ids"][1:]  # (3, B, L'): generate's text row first
    for b, (grid, record) in enumerate(zip(grids, records)):
        comp = record.videos[0].compression
        reps = representatives(grid, comp)
        assert torch.equal(reps, record.videos[0].source)
        assert bool((reps[1:] > reps[:-1]).all())
        assert bool((comp.temporal_labels.flatten()[reps] == torch.arange(comp.num_tokens)).all())
        holders = (inputs["input_ids"][b] == twin.video_token_id).nonzero().flatten()
        expected = [
            stock_positions[:, b, i if kind == "text" else holders[reps[i]]]
            for kind, i in new_prompt(twin, inputs, b, reps)
        ]
        row = positions[:, b, positions.shape[2] - record.length_after :]
        assert torch.equal(row, torch.stack(expected, 1))
    for step in range(1, len(stock.calls)):  # decoding: one new token per call
        torch.testing.assert_close(
            capture.calls[step]["position_ids"][1:], stock.calls[step]["position_ids"][1:]
        )


def test_qwen_images_untouched(twins):
    """An image before the video keeps its stock features and positions."""
    twin = twins["qwen2_5_vl"]
    model = twin.model
    inputs = twin.inputs(QUESTIONS[:1], [0])
    image = twin.tokenizer.convert_tokens_to_ids("<image>")
    ids = inputs["input_ids"]
    ids = torch.cat([ids[:, :2], torch.full((1, 16), image), ids[:, 2:]], dim=1)
    extra = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": (ids == image).long() + 2 * (ids == twin.video_token_id).long(),
        "pixel_values": torch.randn(64, 96),
        "image_grid_thw": torch.tensor([[1, 8, 8]]),
    }
    inputs = {**inputs, **extra}
    stock = model.generate(**inputs, **GREEDY, **LOGITS)
    given = full_tokens(model, inputs)
    with patched(model, retention=1.0):
        same = model.generate(**without_pixels(inputs), video_tokens=given, **GREEDY, **LOGITS)
    assert torch.equal(same.sequences, stock.sequences)
    image_feats = model.model.get_image_features(
        inputs["pixel_values"], inputs["image_grid_thw"]
    ).pooler_output[0]
    with patched(model, retention=0.1), Capture(model) as capture:
        model.generate(**inputs, **GREEDY)
    embeds = capture.calls[0]["inputs_embeds"][0]
    torch.testing.assert_close(embeds[2:18], image_feats)


def test_representatives_order_scc_tokens():
    """On random clustered tokens: one representative per compressed token, inside it, in
    increasing order (the order SCC emits its tokens in)."""
    gen = torch.Generator().manual_seed(0)
    for frames, per_frame, dim, retention in [(3, 20, 8, 0.3), (6, 49, 16, 0.1), (4, 30, 4, 0.6)]:
        centres = torch.randn(5, dim, generator=gen)
        which = torch.randint(0, 5, (frames, per_frame), generator=gen)
        tokens = centres[which] + 0.6 * torch.randn(frames, per_frame, dim, generator=gen)
        comp = scissor_compress(tokens, tau_for_retention(tokens, retention))
        reps = representatives(tokens, comp)
        assert reps.shape == (comp.num_tokens,)
        assert bool((reps[1:] > reps[:-1]).all())
        assert bool((comp.temporal_labels.flatten()[reps] == torch.arange(comp.num_tokens)).all())


# ----------------------------------------------------------------------------- app API


def test_video_tokens_from_any_compression(twins):
    """What the app needs: an answer from given tokens. For LLaVA families the placeholder run
    may have any length (one placeholder is enough); the newline follows unless tail=False."""
    twin = twins["llava_onevision"]
    model = twin.model
    full = twin.inputs(QUESTIONS[:1], [0])
    short_ids = torch.tensor([twin.prompt_ids(QUESTIONS[0], 1)])
    tokens = full_tokens(model, full)[0].tokens[::7]  # any K tokens, e.g. another method's
    with patched(model, retention=0.5) as scissor:
        a = model.generate(**without_pixels(full), video_tokens=[tokens], **GREEDY, **LOGITS)
        b = model.generate(input_ids=short_ids, video_tokens=[tokens], **GREEDY, **LOGITS)
        assert scissor.last[0].tokens_after == len(tokens) + 1  # + the newline
        assert scissor.last[0].length_after == short_ids.shape[1] - 1 + len(tokens) + 1
        with Capture(model) as capture:
            bare = SplicedTokens(tokens, tail=False)
            model.generate(input_ids=short_ids, video_tokens=[bare], **GREEDY)
        assert scissor.last[0].tokens_after == len(tokens)
    new = a.sequences[0, full["input_ids"].shape[1] :]
    assert torch.equal(new, b.sequences[0, short_ids.shape[1] :])
    torch.testing.assert_close(a.logits[0], b.logits[0], rtol=1e-5, atol=1e-5)
    prompt = capture.calls[0]["inputs_embeds"][0]
    at = len(twin.tokenizer.encode(PREFIX))
    assert torch.equal(prompt[at : at + len(tokens)], tokens)
    assert prompt.shape[0] == short_ids.shape[1] - 1 + len(tokens)  # no newline


def test_given_compression_equals_pixels(twin):
    """What the app does for any family: the model's own grids, SCC run outside the patch, and
    ``model.scissor.video_tokens(grid, comp, layers)`` given with the stock placeholders (and
    Qwen's grid inputs, no pixels): the same ids and logits as the patched pixel path at that
    tau. A family that places tokens by their grid refuses given tokens without sources."""
    model, inputs = twin.model, twin.inputs(QUESTIONS, [0, 1])
    with patched(model, retention=0.3) as scissor:
        out = model.generate(**inputs, **GREEDY, **LOGITS)
        taus = [r.tau for r in scissor.last]
        with torch.no_grad():
            encoded = scissor.adapter.encode(inputs)
        given = [
            scissor.video_tokens(grid, scissor_compress(grid, tau), layers)
            for (grid, layers), tau in zip(encoded, taus)
        ]
        rest = without_pixels(inputs, twin.pixels)
        again = model.generate(**rest, video_tokens=given, **GREEDY, **LOGITS)
        tail = len(scissor.adapter.tail())
        assert [r.tokens_after for r in scissor.last] == [len(v.tokens) + tail for v in given]
        if scissor.adapter.needs_source:
            bare = [SplicedTokens(v.tokens) for v in given]
            with pytest.raises(ValueError, match="SplicedTokens.source"):
                model.generate(**rest, video_tokens=bare, **GREEDY)
    assert torch.equal(again.sequences, out.sequences)
    torch.testing.assert_close(again.logits[0], out.logits[0], rtol=1e-5, atol=1e-5)


def test_representatives_from_the_engine():
    """The patch reads representatives from the engine's Compression, the very tensor, and
    recomputes nothing: a compression without them, or another grid, is refused."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 2, 4, generator=gen).repeat_interleave(10, 1)
    tokens = tokens + 0.05 * torch.randn(3, 20, 4, generator=gen)
    comp = scissor_compress(tokens, tau_for_retention(tokens, 0.3))
    assert representatives(tokens, comp) is comp.representatives
    bare = dataclasses.replace(comp, representatives=None)
    with pytest.raises(ValueError, match="no representatives"):
        representatives(tokens, bare)
    with pytest.raises(ValueError, match="not the grid"):
        representatives(tokens[:, :10], comp)


def test_splice_is_what_generate_prefills(twins):
    """``model.scissor.splice`` (the app's FastV reads attention from it) returns the very
    inputs_embeds / attention_mask the patched generate prefills with the same video_tokens,
    and the rows of each video's K tokens in them; it leaves ``last`` alone."""
    twin = twins["llava_onevision"]
    model = twin.model
    full = twin.inputs(QUESTIONS, [0, 1])
    grids = full_tokens(model, full)
    given = [grids[0].tokens[::5], SplicedTokens(grids[1].tokens[::9], tail=False)]
    short = twin.inputs(QUESTIONS, [0, 1])  # the stock placeholders: any run length works
    ids, mask = short["input_ids"], short["attention_mask"]
    with patched(model, retention=1.0) as scissor, Capture(model) as capture:
        model.generate(input_ids=ids, attention_mask=mask, video_tokens=given, **GREEDY)
        last = scissor.last
        inputs, rows = scissor.splice(given, input_ids=ids, attention_mask=mask)
        assert scissor.last is last
        with pytest.raises(ValueError, match="video_tokens for"):
            scissor.splice(given[:1], input_ids=ids, attention_mask=mask)
    prefill = capture.calls[0]
    assert torch.equal(inputs["inputs_embeds"], prefill["inputs_embeds"])
    assert torch.equal(inputs["attention_mask"], prefill["attention_mask"])
    assert "pixel_values_videos" not in inputs
    for b, (video, where) in enumerate(zip(given, rows)):
        tokens = video.tokens if isinstance(video, SplicedTokens) else video
        assert where.shape == (len(tokens), 2) and bool((where[:, 0] == b).all())
        assert bool((where[1:, 1] == where[:-1, 1] + 1).all())  # one run, in order
        assert torch.equal(inputs["inputs_embeds"][b, where[:, 1]], tokens)
    after = rows[0][-1, 1] + 1  # the first video's newline follows its tokens
    assert torch.equal(inputs["inputs_embeds"][0, after], model.model.image_newline)


def test_a_new_family_is_one_adapter(twins):
    """docs/patch.md's example adapter, registered for a class the patch does not know, serves
    it (ahead of the adapter of its base class) and compresses like the built-in one."""
    from scissor_viz.patch import ADAPTERS, Adapter, register_adapter

    class MyVideoLlmAdapter(Adapter):
        classes = ("MyVideoLlmForConditionalGeneration",)
        video_inputs = ("pixel_values_videos",)

        def grids(self, inputs):
            pixels = inputs["pixel_values_videos"]
            feats = self.model.model.get_video_features(pixel_values_videos=pixels).pooler_output
            return list(feats.unflatten(1, (pixels.shape[1], -1)))

    twin = twins["llava_next_video"]
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [0])
    stock_class = type(model)
    with patched(model, retention=0.25):
        builtin = model.generate(**inputs, **GREEDY)
    mine = type("MyVideoLlmForConditionalGeneration", (stock_class,), {})
    register_adapter(MyVideoLlmAdapter)
    model.__class__ = mine
    try:
        with patched(model, retention=0.25) as scissor:
            assert type(scissor.adapter) is MyVideoLlmAdapter
            out = model.generate(**inputs, **GREEDY)
            assert scissor.last[0].tokens_after < scissor.last[0].tokens_before
        assert type(model) is mine
        assert torch.equal(out, builtin)
    finally:
        ADAPTERS.remove(MyVideoLlmAdapter)
        model.__class__ = stock_class


# ----------------------------------------------------------------------------- settings, pickling

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("tau", NAN, "tau must be a finite number"),
        ("tau", INF, "tau must be a finite number"),
        ("tau", "0.9", "tau must be a finite number"),
        ("retention", NAN, "retention must be a ratio"),
        ("epsilon", 7, "epsilon must be in"),
        ("epsilon", NAN, "epsilon must be in"),
        ("seed", 1e30, "seed must be a whole number"),
        ("seed", -1, "seed must be a whole number"),
        ("seed", 0.5, "seed must be a whole number"),
    ],
)
def test_settings_are_checked_when_set(twins, name, value, words):
    """Refused at once, with the engine's rules, whether given to apply_patch or set on
    model.scissor; a refusal leaves the settings as they were."""
    model = twins["llava_next_video"].model
    settings = {name: value} if name in ("tau", "retention") else {"retention": 0.5, name: value}
    with pytest.raises(ValueError, match=words):
        apply_patch(model, **settings)
    assert not hasattr(model, "scissor") and type(model).__dict__.get("_scissor_base") is None
    with patched(model, retention=0.5, epsilon=0.1, seed=3) as scissor:
        before = scissor.setting
        with pytest.raises(ValueError, match=words):
            apply_patch(model, **settings)
        with pytest.raises(ValueError, match=words):
            setattr(scissor, name, value)
        assert scissor.setting == before


def test_non_finite_features_run_the_stock_model(twin):
    """NaN pixels give NaN features: stock generate still answers, and so does the patched one
    (the same ids, uncompressed), with a warning instead of the engine's error."""
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [0])
    inputs[twin.pixels] = torch.full_like(inputs[twin.pixels], NAN)
    assert not all(torch.isfinite(g).all() for g in adapter_for(model).grids(inputs))
    stock = model.generate(**inputs, **GREEDY)
    with patched(model, retention=0.2) as scissor:
        with pytest.warns(RuntimeWarning, match="NaN or infinite"):
            out = model.generate(**inputs, **GREEDY)
        assert [r.tokens_after for r in scissor.last] == [r.tokens_before for r in scissor.last]
    assert torch.equal(out, stock)


def test_a_setting_changed_mid_call_applies_to_the_next_call(twins):
    """Another thread sets retention 1 while a call at 0.1 computes its features: that call
    still compresses at 0.1; the next one runs at 1."""
    twin = twins["llava_next_video"]
    model, inputs = twin.model, twin.inputs(QUESTIONS[:1], [0])
    with patched(model, retention=0.1) as scissor:
        started, changed = threading.Event(), threading.Event()
        grids = scissor.adapter.grids

        def held_grids(inputs):  # the call in flight waits here, its setting already read
            started.set()
            assert changed.wait(60)
            return grids(inputs)

        scissor.adapter.grids = held_grids
        out = {}
        call = threading.Thread(target=lambda: out.update(ids=model.generate(**inputs, **GREEDY)))
        call.start()
        assert started.wait(60)
        scissor.retention = 1.0  # from this thread, during the call
        changed.set()
        call.join(120)
        assert "ids" in out
        during = scissor.last[0]
        assert during.tokens_after < 0.2 * during.tokens_before  # compressed at 0.1
        del scissor.adapter.grids
        model.generate(**inputs, **GREEDY)
        after = scissor.last[0]
        assert after.tokens_after == after.tokens_before  # the next call: retention 1


def test_a_patched_model_pickles(twin):
    """pickle.loads(pickle.dumps(model)) is a patched model with the same settings that
    generates the same ids; the original stays patched, and copy.deepcopy works the same way.
    (A transformers 5 LLaVA model that has run once holds hooks that do not pickle, stock or
    patched: a fresh one is pickled.)"""
    model, inputs = build_twins()[twin.family].model, twin.inputs(QUESTIONS[:1], [1])
    with patched(model, retention=0.3, epsilon=0.1, seed=7) as scissor:
        copies = [pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
        want = model.generate(**inputs, **GREEDY)
        for twin_copy in copies:
            assert type(twin_copy) is type(model) and twin_copy is not model
            assert twin_copy.scissor is not scissor and twin_copy.scissor.setting == scissor.setting
            assert twin_copy.scissor.adapter.model is twin_copy
            assert torch.equal(twin_copy.generate(**inputs, **GREEDY), want)
            assert twin_copy.scissor.last[0].tokens_after == scissor.last[0].tokens_after
            assert remove_patch(twin_copy).__class__ is type(model).__mro__[1]
        assert model.scissor is scissor

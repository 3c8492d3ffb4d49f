"""export: GIF and MP4 files that decode back to the frames written, a JSON partition that
round-trips and that the figures can draw."""

import json

import av
import numpy as np
import pytest
from PIL import Image

from scissor_viz import figures
from scissor_viz.export import Partition, load_partition, save_gif, save_mp4, save_partition
from scissor_viz.scc import ScissorIndex
from tests.test_viz import region_tokens


def moving_images(count: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth frames (a gradient) with a bright bar that moves, so each frame differs."""
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for k in range(count):
        im = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], -1)
        im[:, (k * 7) % width : (k * 7) % width + 5] = 250
        out.append(im.astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def comp():
    tokens, _ = region_tokens()
    return tokens, ScissorIndex(tokens).compress(0.6)


def test_gif_has_every_frame_at_its_size(tmp_path):
    images = moving_images(6, 45, 61)
    path = save_gif(images, tmp_path / "regions.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.size == (61, 45) and gif.n_frames == 6
        assert gif.info["duration"] == 200 and gif.info["loop"] == 0
        for k in range(6):
            gif.seek(k)
            decoded = np.asarray(gif.convert("RGB"), dtype=np.int16)
            assert np.abs(decoded - images[k]).mean() < 6  # 256-colour palette, close to the input


@pytest.mark.parametrize("height,width", [(64, 96), (45, 61)])
def test_mp4_decodes_back_with_pyav(tmp_path, height, width):
    images = moving_images(9, height, width)
    path = save_mp4(images, tmp_path / "regions.mp4", fps=3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 3
    assert len(decoded) == 9
    assert decoded[0].shape == (height + height % 2, width + width % 2, 3)  # even sizes for yuv420p
    for got, want in zip(decoded, images):
        error = np.abs(got[:height, :width].astype(np.int16) - want)
        assert error.mean() < 8


def test_animations_refuse_mixed_sizes(tmp_path):
    images = [np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8)]
    with pytest.raises(ValueError, match="differ in size"):
        save_gif(images, tmp_path / "x.gif")
    with pytest.raises(ValueError, match="no images"):
        save_mp4([], tmp_path / "x.mp4")


def test_partition_json_round_trips(tmp_path, comp):
    tokens, comp = comp
    path = save_partition(
        tmp_path / "p.json",
        comp,
        frames=[0, 8, 16, 24],
        timestamps=[0.0, 0.3333333333333333, 0.6666666666666666, 1.0],
        backend="pixels",
        meta={"video": "clip.mp4"},
    )
    data = json.loads(path.read_text())
    assert data["tau"] == comp.tau and data["retention"] == comp.retention
    assert data["tokens_per_frame"] == comp.spatial_counts.tolist()
    assert data["num_tokens"] == comp.num_tokens and data["method"] == "llava-scissor"
    assert data["spatial_labels"] == comp.spatial_labels.tolist()
    part = load_partition(path)
    for name in ("spatial_labels", "temporal_labels", "assignment"):
        np.testing.assert_array_equal(getattr(part, name), getattr(comp, name).numpy())
    assert (part.tau, part.retention, part.num_tokens) == (
        comp.tau,
        comp.retention,
        comp.num_tokens,
    )
    assert part.frames == [0, 8, 16, 24] and part.timestamps[1] == 0.3333333333333333
    assert (part.backend, part.meta) == ("pixels", {"video": "clip.mp4"})
    again = save_partition(tmp_path / "q.json", part)
    assert again.read_text() == path.read_text()
    # a loaded partition draws like the live Compression
    fig = figures.temporal_graph_figure(tokens, part)
    assert len(fig.data[1].x) == int(part.spatial_counts.sum())


def test_partition_json_is_checked(tmp_path, comp):
    _, comp = comp
    data = Partition.from_compression(comp).to_dict()
    with pytest.raises(ValueError, match="schema"):
        Partition.from_dict({**data, "schema": "other"})
    with pytest.raises(ValueError, match="tokens_per_frame"):
        Partition.from_dict({**data, "tokens_per_frame": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match="frame indices"):
        Partition.from_dict({**data, "frames": [0, 1]})
    with pytest.raises(ValueError, match="assignment"):
        Partition.from_dict({**data, "assignment": data["assignment"][:2]})

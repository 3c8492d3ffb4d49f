"""export: GIF and MP4 files that decode back to the frames written, a JSON partition that
round-trips and that the figures can draw, and the app's export path (what
``VideoAnalysis.summary`` gives) end to end."""

import json

import av
import numpy as np
import pytest
from PIL import Image

from scissor_viz.analysis import VideoAnalysis
from scissor_viz.export import Partition, load_partition, save_gif, save_mp4, save_partition
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.pictures import graphs, regions
from scissor_viz.scc import ScissorIndex
from tests import video_fixtures as vf
from tests.picture_inputs import region_tokens


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
        num_frames=4,
        frame_indices=[0, 8, 16, 24],
        timestamps=[0.0, 0.3333333333333333, 0.6666666666666666, 1.0],
        backend="pixels",
        meta={"video": "clip.mp4"},
    )
    data = json.loads(path.read_text())
    assert data["tau"] == comp.tau and data["retention"] == comp.retention_reached
    assert data["tokens_per_frame"] == comp.spatial_counts.tolist()
    assert data["num_tokens"] == comp.num_tokens and data["method"] == "llava-scissor"
    assert data["num_frames"] == 4 and data["frame_indices"] == [0, 8, 16, 24]
    assert data["spatial_labels"] == comp.spatial_labels.tolist()
    part = load_partition(path)
    for name in ("spatial_labels", "temporal_labels", "assignment"):
        np.testing.assert_array_equal(getattr(part, name), getattr(comp, name).numpy())
    assert (part.tau, part.retention_reached, part.num_tokens) == (
        comp.tau,
        comp.retention_reached,
        comp.num_tokens,
    )
    assert part.frame_indices == [0, 8, 16, 24] and part.timestamps[1] == 0.3333333333333333
    assert (part.backend, part.meta) == ("pixels", {"video": "clip.mp4"})
    again = save_partition(tmp_path / "q.json", part)
    assert again.read_text() == path.read_text()
    # a loaded partition draws like the live Compression
    fig = graphs.temporal_graph_figure(tokens, part)
    assert len(fig.data[1].x) == int(part.spatial_counts.sum())
    images = regions.view_overlays(np.zeros((4, 28, 42, 3), np.uint8), part, "temporal")
    assert len(images) == 4


def test_partition_json_is_checked(tmp_path, comp):
    _, comp = comp
    data = Partition.from_compression(comp).to_dict()
    with pytest.raises(ValueError, match="schema"):
        Partition.from_dict({**data, "schema": "other"})
    with pytest.raises(ValueError, match="tokens_per_frame"):
        Partition.from_dict({**data, "tokens_per_frame": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match="frame indices"):
        Partition.from_dict({**data, "frame_indices": [0, 1]})
    with pytest.raises(ValueError, match="num_frames"):
        Partition.from_dict({**data, "num_frames": 5})
    with pytest.raises(ValueError, match="assignment"):
        Partition.from_dict({**data, "assignment": data["assignment"][:2]})
    # a count where indices belong, or a count that is wrong, says what to pass
    with pytest.raises(ValueError, match="pass a count of frames as num_frames"):
        save_partition(tmp_path / "x.json", comp, frame_indices=4)
    with pytest.raises(ValueError, match="num_frames is 5 but the labels have 4"):
        save_partition(tmp_path / "x.json", comp, num_frames=5)
    with pytest.raises(TypeError):  # the ambiguous keyword is gone
        save_partition(tmp_path / "x.json", comp, frames=4)


def test_partition_version_1_still_loads(comp):
    _, comp = comp
    data = Partition.from_compression(comp, frame_indices=[3, 5, 7, 9]).to_dict()
    old = {k: v for k, v in data.items() if k not in ("num_frames", "frame_indices")}
    old.update(schema="scissor-viz/partition@1", frames=[3, 5, 7, 9])
    part = Partition.from_dict(old)
    assert part.frame_indices == [3, 5, 7, 9] and part.num_frames == 4


def test_export_what_the_app_passes(tmp_path):
    """The app's Export: overlays of the view on screen to GIF and MP4, the partition from the
    fields of ``VideoAnalysis.summary`` to JSON; every file read back."""
    clip = vf.write_clip(tmp_path / "clip.mp4", width=96, height=64, frames=24)
    analysis = VideoAnalysis.open(str(clip), PixelBackend(), num_frames=5)
    comp = analysis.compress(retention=0.35)
    summary = analysis.summary(comp)
    images = regions.view_overlays(analysis.clip.frames, comp, "temporal")
    gif = save_gif(images, tmp_path / "scissor-regions.gif")
    mp4 = save_mp4(images, tmp_path / "scissor-regions.mp4")
    part = save_partition(
        tmp_path / "scissor-partition.json",
        comp,
        num_frames=summary["frames"],
        timestamps=summary["timestamps"],
        method="scc",
        backend=summary["backend"],
    )
    with Image.open(gif) as g:
        assert g.size == (96, 64) and g.n_frames == 5
    with av.open(str(mp4)) as container:
        assert len(list(container.decode(video=0))) == 5
    loaded = load_partition(part)
    np.testing.assert_array_equal(loaded.temporal_labels, comp.temporal_labels.numpy())
    assert loaded.num_frames == summary["frames"] == 5
    assert loaded.timestamps == summary["timestamps"] and loaded.backend == "pixels"
    assert loaded.method == "scc" and loaded.frame_indices is None
    again = save_partition(tmp_path / "q.json", comp, frame_indices=analysis.clip.indices)
    assert load_partition(again).frame_indices == analysis.clip.indices.tolist()

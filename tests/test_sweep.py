"""The sweep: rows into CSV and JSON, plots, skipping what needs a model, resuming."""

import csv
import json
from pathlib import Path

import pytest

from scissor_viz import __main__ as cli
from scissor_viz import sweep
from scissor_viz.analysis import MethodInputs
from scissor_viz.sweep import (
    FIELDS,
    find_videos,
    parse_retentions,
    read_rows,
    run_sweep,
)
from scissor_viz.synthetic import video_tokens

METHODS = ["scc", "tome", "pool", "fastv"]
RETENTIONS = [0.1, 0.5]


class FakeTokens:
    """A tokens_fn over synthetic videos that records which videos it was asked for."""

    def __init__(self, attention: bool = False, broken: tuple[str, ...] = ()):
        self.calls: list[str] = []
        self.attention = attention
        self.broken = broken

    def __call__(self, path: Path, frames: int) -> MethodInputs:
        self.calls.append(path.name)
        if path.name in self.broken:
            raise ValueError("cannot decode")
        seed = sum(map(ord, path.name))
        tokens = video_tokens(frames=frames, side=6, dim=16, seed=seed)
        attention_fn = (lambda t: t.norm(dim=-1)) if self.attention else None
        return MethodInputs(tokens, "synthetic", clip=f"key-{seed}", attention_fn=attention_fn)


def sweep_into(out: Path, tokens_fn, videos=("a.mp4", "b.mp4"), **kw) -> list[dict]:
    kw = {
        "frames": 3,
        "retentions": RETENTIONS,
        "methods": METHODS,
        "progress": False,
        "plots": False,
        **kw,
    }
    return run_sweep([Path(v) for v in videos], out, tokens_fn=tokens_fn, **kw)


def test_writes_csv_json_and_plots(tmp_path):
    fake = FakeTokens()
    rows = sweep_into(tmp_path, fake, plots=True)
    assert len(rows) == 2 * 3 * 2  # fastv skipped: no LLM attention
    assert fake.calls == ["a.mp4", "b.mp4"]
    on_disk = read_rows(tmp_path / "results.csv")
    assert on_disk == rows
    with (tmp_path / "results.csv").open() as f:
        assert tuple(next(csv.reader(f))) == FIELDS
    row = next(r for r in rows if r["method"] == "tome" and r["retention"] == 0.1)
    assert row["backend"] == "synthetic" and row["frames_used"] == 3 and row["tau"] is None
    assert row["num_tokens"] == 11 and 0 < row["coverage"] <= 1  # round(0.1 * 108)
    assert next(r for r in rows if r["method"] == "scc")["tau"] is not None
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"] == rows and data["backends"] == {"a.mp4": "synthetic", "b.mp4": "synthetic"}
    assert {(s["video"], s["method"]) for s in data["skipped"]} == {
        ("a.mp4", "fastv"),
        ("b.mp4", "fastv"),
    }
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.html")) == ["a.html", "b.html"]
    assert "Plotly" in (tmp_path / "plots" / "a.html").read_text()


def test_resumes_without_recomputing(tmp_path):
    sweep_into(tmp_path, FakeTokens(), methods=METHODS[:3])
    again = FakeTokens()
    rows = sweep_into(tmp_path, again, methods=METHODS[:3])
    assert again.calls == [] and len(rows) == 12  # nothing left: no video decoded
    more = FakeTokens()
    rows = sweep_into(tmp_path, more, methods=METHODS[:3], retentions=[0.1, 0.5, 1.0])
    assert more.calls == ["a.mp4", "b.mp4"] and len(rows) == 18


def test_resumes_after_an_interrupted_write(tmp_path):
    sweep_into(tmp_path, FakeTokens(), methods=METHODS[:3])
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]) + lines[-3][:25])  # two rows lost, one cut mid-line
    fake = FakeTokens()
    rows = sweep_into(tmp_path, fake, methods=METHODS[:3])
    assert fake.calls == ["b.mp4"]  # only the video with missing rows is decoded again
    keys = [(r["video"], r["method"], r["retention"]) for r in read_rows(path)]
    assert len(keys) == len(set(keys)) == 12 and len(rows) == 12


def test_fastv_runs_with_attention_and_bad_videos_are_skipped(tmp_path):
    fake = FakeTokens(attention=True, broken=("b.mp4",))
    rows = sweep_into(tmp_path, fake)
    assert {r["video"] for r in rows} == {"a.mp4"}
    assert sum(r["method"] == "fastv" for r in rows) == 2
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["skipped"] == [
        {"video": "b.mp4", "method": "", "reason": "ValueError: cannot decode"}
    ]


def test_rejects_a_foreign_csv_and_bad_arguments(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other columns"):
        sweep_into(tmp_path, FakeTokens())
    with pytest.raises(ValueError, match="unknown methods"):
        sweep_into(tmp_path / "x", FakeTokens(), methods=["nope"])
    with pytest.raises(ValueError, match="retentions"):
        sweep_into(tmp_path / "x", FakeTokens(), retentions=[0.0])


def test_inputs(tmp_path):
    for name in ("b.mp4", "a.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_videos(tmp_path)] == ["a.MOV", "b.mp4"]
    assert find_videos(tmp_path / "b.mp4") == [tmp_path / "b.mp4"]
    with pytest.raises(FileNotFoundError):
        find_videos(tmp_path / "missing.mp4")
    assert parse_retentions("0.05, 0.5,1") == (0.05, 0.5, 1.0)
    with pytest.raises(ValueError):
        parse_retentions("0.5,2")
    rows = run_sweep(
        [Path("a.mp4")],
        tmp_path / "out",
        frames=1,
        retentions=[1.0],
        tokens_fn=FakeTokens(),
        progress=False,
        plots=False,
    )
    assert "fastv" not in {r["method"] for r in rows} and len(rows) == 8  # default methods
    assert sweep.DEFAULT_RETENTIONS[0] == 0.05 and sweep.DEFAULT_RETENTIONS[-1] == 1.0
    assert len(sweep.DEFAULT_RETENTIONS) == 20


def test_command_line(tmp_path, monkeypatch, capsys):
    videos = tmp_path / "clips"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"")
    monkeypatch.setattr(sweep, "backend_tokens", lambda checkpoint: FakeTokens())
    out = tmp_path / "out"
    code = cli.main(
        [
            "sweep",
            str(videos),
            "--out",
            str(out),
            "--frames",
            "2",
            "--retentions",
            "0.2,1",
            "--methods",
            "random,dycoke",
            "--quiet",
        ]
    )
    assert code == 0 and "4 rows" in capsys.readouterr().out
    assert {r["method"] for r in read_rows(out / "results.csv")} == {"random", "dycoke"}
    with pytest.raises(SystemExit):
        cli.main(["sweep", str(videos), "--out", str(out), "--methods", "nope"])
    assert cli.main(["sweep", str(tmp_path / "none.mp4"), "--out", str(out)]) == 2


def test_default_tokens_come_from_the_backend(tmp_path, monkeypatch):
    """End to end on a real (tiny) video with the weight-free backend, when those modules exist."""
    pytest.importorskip("scissor_viz.video")
    pixels = pytest.importorskip("scissor_viz.models.pixels")
    fixtures = pytest.importorskip("tests.video_fixtures")
    path = fixtures.write_clip(tmp_path / "clip.mp4", frames=8)
    monkeypatch.setattr(
        "scissor_viz.models.load_backend", lambda checkpoint=None: pixels.PixelBackend()
    )
    rows = run_sweep(
        [path],
        tmp_path / "out",
        frames=4,
        retentions=[0.25],
        methods=["tome"],
        progress=False,
        plots=False,
    )
    assert len(rows) == 1 and rows[0]["backend"] == "pixels" and rows[0]["frames_used"] == 4
    assert rows[0]["clip"] and 0 < rows[0]["coverage"] <= 1

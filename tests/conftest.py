"""Shared test fixtures and reference implementations.

* ``tiny_llava_folder``: one tiny random LLaVA-OneVision checkpoint folder per test session
  (tests/tiny_llava.py builds it);
* ``tiny_backend``: that folder loaded once per session (``load_backend``, CPU, no fallback);
  tests share it, so a test that changes it puts it back (``monkeypatch``);
* ``pixel_url``: the app served in this process (one per test module) with a checkpoint that
  cannot load, so it falls back to pixel descriptors, as on a machine without weights;
* ``region_video``: 4 frames of tokens with known regions (tests/picture_inputs.py), their
  (4, 14, 14) region map and their ScissorIndex, for the picture tests;
* :func:`networkx_partition`, :func:`graph_partition`: connected components by networkx, an
  oracle independent of the engine's scipy code;
* :func:`partition`: the set partition a label array describes, to compare labelings whatever
  their numbering;
* the fast lane, ``pytest -m "not slow"``: servers, browsers, child processes and every model
  family but LLaVA-OneVision are ``slow`` (:func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import os

import networkx as nx
import numpy as np
import pytest

from tests.tiny_llava import build_tiny_llava_folder

# Fixtures whose tests are slow by nature: videos decoded in child processes, a served app.
SLOW_FIXTURES = {"clips", "hostile", "pixel_url"}
FAST_FAMILY = "llava_onevision"  # the one model family the fast lane runs tests over


def pytest_collection_modifyitems(items):
    """The fast lane (``-m "not slow"``) leaves out, besides tests marked slow: browser tests,
    tests that use a slow fixture, and tests over a model family other than LLaVA-OneVision
    (the full run tests every family)."""
    for item in items:
        params = getattr(item, "callspec", None)
        family = params and (params.params.get("twin") or params.params.get("family"))
        if (
            item.get_closest_marker("browser")
            or SLOW_FIXTURES & set(item.fixturenames)
            or family not in (None, FAST_FAMILY)
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def ordinary_scheduling():
    """A test that leaves pytest's thread with a real-time scheduling policy fails (and the
    policy is put back): processes started later inherit it, and two busy real-time processes
    on a 2-core machine starve everything else (SVT-AV1 did this: tests/video_fixtures.py)."""
    yield
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        policy = os.sched_getscheduler(0)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        pytest.fail(f"the test left pytest's thread with scheduling policy {policy} (real-time)")


@pytest.fixture(scope="session")
def tiny_llava_folder(tmp_path_factory):
    """A tiny random LLaVA-OneVision checkpoint folder (see tests/tiny_llava.py)."""
    return build_tiny_llava_folder(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_llava_folder):
    """The tiny checkpoint as the app loads it: a LlavaOnevisionBackend with random weights."""
    from scissor_viz.models import load_backend
    from scissor_viz.models.llava_onevision import LlavaOnevisionBackend

    backend = load_backend(str(tiny_llava_folder), device="cpu", fallback=False)
    assert isinstance(backend, LlavaOnevisionBackend) and not backend.pretrained
    return backend


@pytest.fixture(scope="module")
def pixel_url(tmp_path_factory):
    from scissor_viz.ui import build_demo
    from tests.serving import launch

    demo = build_demo(checkpoint=str(tmp_path_factory.mktemp("weights") / "no-checkpoint"))
    yield launch(demo)
    demo.close()


@pytest.fixture(scope="session")
def region_video():
    from scissor_viz.scc import ScissorIndex
    from tests.picture_inputs import region_tokens

    tokens, regions = region_tokens()
    return tokens, regions, ScissorIndex(tokens)


def graph_partition(n: int, i, j) -> set[frozenset[int]]:
    """Connected components of the undirected graph on n nodes with edges (i, j), by networkx."""
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(np.asarray(i).tolist(), np.asarray(j).tolist()))
    return {frozenset(c) for c in nx.connected_components(graph)}


def networkx_partition(sim: np.ndarray, tau: float) -> set[frozenset[int]]:
    """Connected components of the upper-triangle graph sim > tau, by networkx."""
    i, j = np.nonzero(np.triu(sim > np.float32(tau), 1))
    return graph_partition(len(sim), i, j)


def partition(labels) -> set[frozenset[int]]:
    """The groups of equal labels (a tensor or array of any shape, flattened)."""
    labels = np.asarray(labels).ravel()
    return {frozenset(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)}

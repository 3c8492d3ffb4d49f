import pytest

from scissor_viz.numbers import tau_exact, tau_text


@pytest.mark.parametrize(
    "tau, text",
    [(0.9525, "0.9525"), (0.5, "0.5000"), (1 - 3.21e-4, "1 − 3.21·10⁻⁴"), (1.0, "1"),
     (1 - 1.5e-7, "1 − 1.50·10⁻⁷"), (None, "—"), (float("nan"), "—"), (-0.25, "-0.2500")],
)
def test_tau_text(tau, text):
    assert tau_text(tau) == text


def test_near_one_values_that_four_decimals_merge_read_apart():
    a, b = 1 - 3.2e-4, 1 - 2.6e-4
    assert f"{a:.4f}" == f"{b:.4f}"  # four decimals merge them
    assert tau_text(a) != tau_text(b)


@pytest.mark.parametrize("tau", [0.1, 1 - 3.2123456789e-4, 0.999999999, 0.30000000000000004])
def test_tau_exact_reads_back_the_same_float(tau):
    assert float(tau_exact(tau)) == tau


def test_tau_short_names_the_same_float32_threshold():
    """The shortest decimal that reads back as the engine's τ (float32): typed, it gives the
    same count; similarities bunched near 1 keep their digits."""
    import numpy as np

    from scissor_viz.numbers import tau_short

    rng = np.random.default_rng(15)
    near_one = 1 - 10.0 ** rng.uniform(-7, -2, 200)
    for tau in np.concatenate([rng.uniform(-1, 1, 200), near_one]).astype(np.float32):
        text = tau_short(float(tau))
        assert np.float32(float(text)) == tau, (tau, text)
        assert len(text) <= 12, text
    assert tau_short(1.0) == "1" and tau_short(0.5) == "0.5"

"""The Retention slider as a person feels it, measured in Chromium.

    python benchmarks/bench_ui.py                  # 16 frames, 5 drags
    python benchmarks/bench_ui.py --drags 9 --frames 32
    python benchmarks/bench_ui.py --video bikes.mp4    # a clip of your own, uploaded

Serves the app without weights (pixel descriptors), opens it in Debian's Chromium at
1440 x 1000, clicks the example (or uploads ``--video``; 16 frames), checks that the first
screen shows the regions, the frame's τ-graph and the answer panel together and how much the
first overlay follows its frame's luminance (the video showing through), and drags Retention
with the mouse 5 times (about 0.6 s each, alternating down and up). For each drag it reports:

* the fewest overlays on screen at any moment of the drag and until the view settled (the page
  is sampled every 10 ms); the target is at least 2: the pictures never leave the screen;
* how many different token counts the numbers line showed while the mouse was down (updates
  while dragging);
* seconds from release until the main screen has changed and settled (``browser.settle``):
  the numbers differ from before the drag, the frame's τ-graph is drawn for the same τ (its
  title names the numbers line's τ and the line under it does not say "Out of date"), and
  none of the numbers, the overlays and the graph change for 0.4 s (the time of the last
  change is reported). The target: a median of at most 0.6 s at 16 frames on this 2-core
  machine. (Since stop 24 the τ-graph is part of "settled": it is no longer redrawn at every
  step but when the slider rests, so the time until it agrees is counted; before, a settle
  watched the numbers and the overlays only.)

Then it opens the Similarity tab and drags 3 times more: seconds from release until the tab's
"Drawn for" line names the count on screen (target: within 3 s), and whether the line said
"Out of date" in between whenever the numbers had already changed (never silently wrong).

The machine's load average is printed: other work on a shared machine shows up here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py serves it (before torch)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scissor_viz.ui import build_demo
from tests.browser import (
    WATCH_OVERLAYS,
    chromium,
    compress_example,
    compress_upload,
    drag_slider,
    first_screen,
    luminance_correlation,
    open_page,
    settle,
    token_counts,
)
from tests.serving import free_port

DRAGS = ((0.34, 0.12), (0.12, 0.5), (0.5, 0.2), (0.2, 0.7), (0.7, 0.3))
# Every 20 ms, whether the Similarity tab's line disagrees with the numbers line without
# saying "Out of date" (silently wrong), and when it first agrees.
WATCH_TAB = """() => {
  window.__silent = 0; window.__agreed = null; clearInterval(window.__tw);
  window.__tw = setInterval(() => {
    const m = document.querySelector('#numbers').innerText.match(/→ ([\\d,]+) tokens/);
    // (the line's own words: a redraw's progress timer may sit in front of them)
    const text = document.querySelector('#drawn-similarity').innerText;
    const line = text.slice(Math.max(0, text.search(/Drawn for|⚠️/)));
    if (!m) return;
    const agrees = line.startsWith('Drawn for') && line.includes(' ' + m[1] + ' token');
    if (!agrees && !line.includes('Out of date')) window.__silent += 1;
    if (agrees && window.__agreed === null) window.__agreed = performance.now();
    if (!agrees) window.__agreed = null;
  }, 20);
}"""


def tab_drag(page, start: float, stop: float) -> dict:
    """A drag with the Similarity tab open: seconds from release until its line agrees."""
    before = page.locator("#numbers").inner_text()
    drag_slider(page, "retention", start, stop)
    released = page.evaluate("performance.now()")
    page.evaluate(WATCH_TAB)
    settle(page, before)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        agreed = page.evaluate("window.__agreed")
        if agreed is not None and time.monotonic() - t0 > 0.5:
            break
        time.sleep(0.05)
    silent = page.evaluate("window.__silent")
    page.evaluate("clearInterval(window.__tw)")
    return dict(redrawn_s=(agreed - released) / 1000 if agreed else float("inf"), silent=silent)


def one_drag(page, start: float, stop: float) -> dict:
    before = page.locator("#numbers").inner_text()
    page.evaluate(WATCH_OVERLAYS)
    # sample the numbers while the mouse moves, from the page itself
    page.evaluate(
        """() => { window.__counts = new Set(); clearInterval(window.__nw);
        window.__nw = setInterval(() => window.__counts.add(
          document.querySelector('#numbers').innerText.split('tokens')[0]), 20); }"""
    )
    value = drag_slider(page, "retention", start, stop)
    page.evaluate("clearInterval(window.__nw)")
    seen = page.evaluate("Array.from(window.__counts)")
    settled = settle(page, before)
    fewest = page.evaluate("window.__fewest")
    page.evaluate("clearInterval(window.__watch)")
    total, kept = token_counts(page)
    return dict(
        retention=value,
        kept=kept,
        total=total,
        settled_s=settled,
        fewest=fewest,
        counts_while_dragging=len(seen),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drags", type=int, default=len(DRAGS))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--video", type=Path, help="upload this video instead of the example")
    args = parser.parse_args()

    demo = build_demo(checkpoint=str(ROOT / "no-weights-here"))
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    rows = []
    try:
        with chromium() as browser:
            page = open_page(browser, url)
            if args.frames != 16:
                page.locator("#frames input[type=number]").fill(str(args.frames))
            t0 = time.perf_counter()
            if args.video:
                compress_upload(page, args.video, args.frames)
            else:
                compress_example(page, args.frames)
            name = args.video.name if args.video else "the example"
            print(f"{name}: compressed and drawn in {time.perf_counter() - t0:.1f} s")
            time.sleep(3)  # the video-wide figures and the frame's views follow the first draw
            on_screen = [
                sel for sel, box in first_screen(page).items() if box and box["y"] + 20 < 1000
            ]
            print(f"in the first screen: {', '.join(on_screen)} ({len(on_screen)} of 3)")
            video = args.video or ROOT / "assets" / "bigbuckbunny.mp4"
            r = luminance_correlation(page, video, args.frames)
            print(f"first overlay vs its frame's luminance: correlation {r:.2f}")
            for k in range(args.drags):
                rows.append(one_drag(page, *DRAGS[k % len(DRAGS)]))
                time.sleep(1.0)
            page.get_by_role("tab", name="Similarity").click()
            time.sleep(5)
            tabs = [tab_drag(page, *DRAGS[k]) for k in range(3)]
            assert not page.crashes, page.crashes
    finally:
        demo.close()

    print("\n| drag | retention | tokens | counts while dragging | fewest overlays | settled (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, r in enumerate(rows, 1):
        print(
            f"| {k} | {r['retention']:.2f} | {r['kept']:,} of {r['total']:,} | "
            f"{r['counts_while_dragging']} | {r['fewest']} | {r['settled_s']:.2f} |"
        )
    median = statistics.median(r["settled_s"] for r in rows)
    fewest = min(r["fewest"] for r in rows)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    print(
        f"median settle {median:.2f} s after release (target <= 0.6 s): "
        f"{'met' if median <= 0.6 else 'MISSED'}; fewest overlays on screen {fewest} "
        f"(target >= 2): {'met' if fewest >= 2 else 'MISSED'}"
    )
    late = max(t["redrawn_s"] for t in tabs)
    silent = sum(t["silent"] for t in tabs)
    print(
        "Similarity tab redrawn "
        + ", ".join(f"{t['redrawn_s']:.2f}" for t in tabs)
        + f" s after release (target <= 3 s): {'met' if late <= 3 else 'MISSED'}; "
        f"samples silently out of date: {silent} (target 0)"
    )


if __name__ == "__main__":
    main()

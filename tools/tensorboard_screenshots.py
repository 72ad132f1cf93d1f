"""Retake the TensorBoard screenshots of results/patrol_search/README.md in headless Chromium.

It starts TensorBoard on LOGDIR (a `marl pareto` sweep's tensorboard directory), clicks through the views
that the README's "Reading the trade-off in TensorBoard" section describes, saves three PNGs into OUT and
always stops TensorBoard again:

- hparams_parallel_coordinates.png: HPARAMS -> PARALLEL COORDINATES VIEW, `random` (policy) and `rooms`
  (map) unticked, Color by `pareto/on_front`;
- hparams_table_sorted.png: HPARAMS -> TABLE VIEW sorted by `pareto/time_to_find`, ascending;
- images_front_actual_size.png: IMAGES with the run `_front` ticked and "Show actual image size".

Needs `pip install playwright` (its own browser download is not needed) and Debian's chromium
(`apt install chromium`); TensorBoard is the `tensorboard` executable next to the running Python unless
--tensorboard names another. Not part of the test suite. Run it as

    python tools/tensorboard_screenshots.py \
        --logdir results/pareto/patrol_search_heuristics/tensorboard/heuristics \
        --out results/patrol_search/screenshots [--chromium /usr/bin/chromium] [--tensorboard PATH]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

FRONT_RUN = "_front"
SORT_METRIC = "pareto/time_to_find"
COLOR_METRIC = "pareto/on_front"
UNTICKED_VALUES = ("random", "rooms")  # under `policy` and `map`

# True when no column of the HParams table scrolls out of view and no header breaks inside a word.
TABLE_FITS_JS = """grid => {
  const ctx = document.createElement("canvas").getContext("2d");
  const breaks = e => {
    const s = getComputedStyle(e);
    ctx.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
    return e.textContent.trim().split(/\\s+/).some(w => ctx.measureText(w).width > e.clientWidth + 0.5);
  };
  const table = grid.shadowRoot.querySelector("#table");
  return table.scrollWidth <= table.clientWidth && ![...grid.querySelectorAll(".table-header")].some(breaks);
}"""
# The top of the first table row that does not fit above `height`, else `height`.
FIRST_CUT_ROW_JS = """(grid, height) => {
  const cut = [...grid.shadowRoot.querySelectorAll("#items tr")].map(r => r.getBoundingClientRect())
    .filter(r => r.height > 0 && r.top < height && r.bottom > height);
  return cut.length ? Math.floor(Math.min(...cut.map(r => r.top))) : height;
}"""


class StepFailed(RuntimeError):
    """A step of the walk through TensorBoard failed."""


@contextmanager
def step(name: str) -> Iterator[None]:
    """Run one step, turning Playwright's errors into a message that names it."""
    print(f"- {name}", flush=True)
    try:
        yield
    except (PlaywrightError, AssertionError) as err:
        raise StepFailed(f"step '{name}' failed: {str(err).splitlines()[0]}") from err


def find_tensorboard(given: str | None) -> str:
    """The tensorboard executable: --tensorboard, else next to this Python, else on PATH."""
    candidates = [given] if given else [str(Path(sys.executable).parent / "tensorboard"), "tensorboard"]
    for candidate in candidates:
        if found := shutil.which(candidate):
            return found
    sys.exit(f"tensorboard not found (tried {', '.join(candidates)}); pass --tensorboard")


def get(url: str) -> bytes | None:
    """The body at `url`, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


def wait_for_tensorboard(proc: subprocess.Popen[bytes], base: str, timeout: float = 180.0) -> None:
    """Wait until TensorBoard answers and its list of runs has stopped growing."""
    deadline, runs, stable = time.monotonic() + timeout, b"", 0
    while stable < 3:
        if proc.poll() is not None:
            raise StepFailed(f"TensorBoard exited with code {proc.returncode} (see its output above)")
        if time.monotonic() > deadline:
            raise StepFailed(f"TensorBoard did not answer at {base} within {timeout:.0f} s")
        time.sleep(1)
        latest = get(f"{base}/data/runs")
        stable, runs = (stable + 1 if latest and latest == runs and len(latest) > 2 else 0), latest or b""


def open_hparams(browser: Browser, base: str, width: int, height: int) -> Page:
    """A fresh page on the HPARAMS tab, once its session groups have loaded."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{base}/#hparams")
    expect(page.get_by_text("Number of matching session groups")).to_be_visible(timeout=60_000)
    expect(page.locator("vaadin-grid .table-cell").first).to_be_visible()
    return page


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the (visible) dropdown labelled `label`."""
    dropdown = page.get_by_label(label, exact=True).filter(visible=True)
    dropdown.click()
    choice = page.get_by_role("option", name=option, exact=True).filter(visible=True)
    choice.click()
    expect(choice).to_be_hidden()
    expect(dropdown).to_have_value(option)


def settle(page: Page) -> None:
    """Move the mouse off the plots (no hover highlight) and let the redraw finish."""
    page.mouse.move(1, page.viewport_size["height"] - 1)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1000)


def parallel_coordinates(browser: Browser, base: str, out: Path) -> None:
    with step("HPARAMS -> PARALLEL COORDINATES VIEW"):
        page = open_hparams(browser, base, 1920, 1080)
        page.get_by_role("tab", name="PARALLEL COORDINATES VIEW").click()
        plot = page.locator("tf-hparams-parallel-coords-plot svg")
        expect(plot.locator("g.axis").first).to_be_visible()
    for value in UNTICKED_VALUES:
        with step(f"untick '{value}' in the left pane"):
            page.get_by_role("checkbox", name=value, exact=True).uncheck()
    with step(f"Color by {COLOR_METRIC}"):
        choose(page, "Color by", COLOR_METRIC)
    with step("save hparams_parallel_coordinates.png"):
        settle(page)
        expect(page.get_by_text("Metrics", exact=True)).to_be_in_viewport(ratio=1)
        # End the picture above the first metric that is not shown, so no widget is cut in half.
        bottom = page.viewport_size["height"]
        hidden_metric = page.locator("paper-checkbox.metric-checkbox[aria-checked='false']").first
        if hidden_metric.count() and (box := hidden_metric.bounding_box()):
            plot_box = plot.bounding_box()
            bottom = min(bottom, max(int(box["y"]) - 6, int(plot_box["y"] + plot_box["height"]) + 20))
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": bottom}
        page.screenshot(path=out / "hparams_parallel_coordinates.png", clip=clip)
        page.close()


def table_sorted(browser: Browser, base: str, out: Path) -> None:
    with step("HPARAMS -> TABLE VIEW"):
        page = open_hparams(browser, base, 2400, 1200)
        page.get_by_role("tab", name="TABLE VIEW").click()
        grid = page.locator("vaadin-grid").filter(visible=True)
    with step(f"Sorting: Sort by {SORT_METRIC}, Direction Ascending"):
        choose(page, "Sort by", SORT_METRIC)
        choose(page, "Direction", "Ascending")
    with step("widen the Trial ID column to its longest ID (drag its header's edge)"):
        cells = grid.locator(".table-cell")
        overflow = cells.evaluate_all("els => Math.max(0, ...els.map(e => e.scrollWidth - e.clientWidth))")
        if overflow > 0:
            handle = grid.locator("[part~='resize-handle']").first.bounding_box()
            x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + overflow + 8, y, steps=10)
            page.mouse.up()
    with step("widen the window until every column fits"):
        width = page.viewport_size["width"]
        while not grid.evaluate(TABLE_FITS_JS) and width < 4000:
            width += 40
            page.set_viewport_size({"width": width, "height": page.viewport_size["height"]})
        if not grid.evaluate(TABLE_FITS_JS):
            print(f"  warning: the table does not fit even {width} px; some headers wrap or columns scroll")
    with step("save hparams_table_sorted.png"):
        settle(page)
        bottom = grid.evaluate(FIRST_CUT_ROW_JS, page.viewport_size["height"])
        clip = {"x": 0, "y": 0, "width": width, "height": bottom}
        page.screenshot(path=out / "hparams_table_sorted.png", clip=clip)
        page.close()


def images_front(browser: Browser, base: str, out: Path) -> None:
    with step("IMAGES tab"):
        page = browser.new_page(viewport={"width": 1680, "height": 1080})
        page.goto(f"{base}/#images")
        actual_size = page.get_by_role("checkbox", name="Show actual image size")
        expect(actual_size).to_be_visible(timeout=60_000)
    with step(f"tick the run {FRONT_RUN} (filter the runs by its name)"):
        runs = page.locator("tf-multi-checkbox")
        runs.get_by_label("Write a regex to filter runs").fill(FRONT_RUN)
        expect(runs.get_by_text(FRONT_RUN, exact=True)).to_be_visible()
        run_box: Locator = runs.get_by_role("checkbox")
        expect(run_box).to_have_count(1)
        run_box.check()
    with step("tick Show actual image size"):
        actual_size.check()
    with step("save images_front_actual_size.png (down to the end of the first image)"):
        image = page.locator("tf-image-loader img").first
        expect(image).to_have_js_property("complete", True)
        if not image.evaluate("img => img.naturalWidth"):
            raise AssertionError("the front figure did not load")
        box = page.locator("tf-image-loader").first.bounding_box()
        page.set_viewport_size({"width": 1680, "height": int(box["y"] + box["height"]) + 24})
        settle(page)
        page.screenshot(path=out / "images_front_actual_size.png")
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, required=True, help="the sweep's TensorBoard directory")
    parser.add_argument("--out", type=Path, required=True, help="where to write the PNGs")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--tensorboard", help="tensorboard executable (default: next to this Python)")
    parser.add_argument("--port", type=int, default=6123)
    args = parser.parse_args()
    if not args.logdir.is_dir():
        sys.exit(f"no such log directory: {args.logdir}")
    base = f"http://127.0.0.1:{args.port}"
    if get(f"{base}/data/plugins_listing") is not None:
        sys.exit(f"something already answers at {base}; stop it or pass another --port")
    args.out.mkdir(parents=True, exist_ok=True)

    command = [find_tensorboard(args.tensorboard), "--logdir", str(args.logdir)]
    tensorboard = subprocess.Popen([*command, "--port", str(args.port), "--host", "127.0.0.1"])
    try:
        with step(f"start TensorBoard at {base}"):
            wait_for_tensorboard(tensorboard, base)
        with sync_playwright() as playwright:
            with step(f"launch {args.chromium} (headless)"):
                browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            try:
                for take in (parallel_coordinates, table_sorted, images_front):
                    take(browser, base, args.out)
            finally:
                browser.close()
    except StepFailed as err:
        sys.exit(str(err))
    finally:
        tensorboard.terminate()
        try:
            tensorboard.wait(timeout=15)
        except subprocess.TimeoutExpired:
            tensorboard.kill()
    for name in ("hparams_parallel_coordinates", "hparams_table_sorted", "images_front_actual_size"):
        print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()

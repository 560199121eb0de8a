"""The annotation page in headless Chromium: answer with the keyboard and a click, reload (resumes, progress shown),
export the CSV. The answers are constructed by the test (annotator id `constructed-browser`)."""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

import pytest

from bench.annotations.items import Catalogue
from bench.annotations.server import AnnotationServer
from bench.run.plan import RunRequest
from bench.run.runner import execute
from bench.store import Store

ANN = "constructed-browser"


def wait_until_decoded(page, names: list[str], timeout_s: float = 60.0) -> None:
    """Until every `#img-<name>` has been fetched and decoded (naturalWidth > 0). Polled from Python with
    `page.evaluate` (a DevTools call): Playwright's own `wait_for_function` polls with eval inside the page, which
    the page's Content-Security-Policy (no 'unsafe-eval') rightly blocks whenever the first check comes too early."""
    check = "names => names.every(n => document.getElementById('img-' + n).naturalWidth > 0)"
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(check, names):
        assert time.monotonic() < deadline, f"images {names} not decoded within {timeout_s:.0f} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two smoke runs of the floor attack (4 private images each): one to annotate alone, both for pairs."""
    out = tmp_path_factory.mktemp("browser-results")
    ids = [execute(RunRequest(attack="mean-image", defense=d, profile="smoke", n_train=6, n_test=4,
                              metrics=("psnr",), results=out, progress=False)).run_id
           for d in ("none", "descriptor-noise")]
    shutil.rmtree(out / "cache", ignore_errors=True)
    return out, ids


def test_annotate_in_the_browser_reload_resumes_and_exports(page, smoke: tuple[Path, list[str]],
                                                            tmp_path: Path) -> None:
    results, (run_id, _) = smoke
    server = AnnotationServer(Catalogue(results, [run_id])).start()
    try:
        page.goto(server.url)
        page.fill("#annotator", ANN)
        page.click("#start")
        progress = page.locator("#progress")
        progress.filter(has_text="0 / 4 answered").wait_for()
        assert page.locator("#question").text_content() == "Is the reconstruction recognisable as the original?"
        # the images are really served (decoded by the browser) with the token the page carries
        wait_until_decoded(page, ["original", "reconstruction"])
        shown = []
        for how in ("key-y", "click-no", "key-n"):
            key = page.locator("#task").get_attribute("data-key")
            shown.append(key)
            done = len(shown)
            if how == "key-y":
                page.keyboard.press("y")
            elif how == "key-n":
                page.keyboard.press("n")
            else:
                page.click("#answer-no")
            progress.filter(has_text=f"{done} / 4 answered").wait_for()
            assert page.locator("#status").text_content().startswith("saved")
        next_key = page.locator("#task").get_attribute("data-key")
        assert next_key not in shown

        # Reload: the annotator id is remembered, progress is shown and the page resumes at the unanswered item.
        page.reload()
        progress.filter(has_text="3 / 4 answered").wait_for()
        assert page.locator("#annotator").input_value() == ANN
        assert page.locator("#task").get_attribute("data-key") == next_key
        assert page.locator("#bar > div").evaluate("e => e.style.width") == "75%"

        # Export from the page's link.
        with page.expect_download() as info:
            page.click("#export")
        saved = tmp_path / "export.csv"
        info.value.save_as(saved)
        rows = list(csv.DictReader(io.StringIO(saved.read_text())))
        labels = {f"r:{r['run_id']}:{r['sample_index']}": r["label"] for r in rows}
        assert labels == {shown[0]: "1", shown[1]: "0", shown[2]: "0"}
        assert {r["annotator"] for r in rows} == {ANN}

        # The last answer finishes the set.
        page.keyboard.press("y")
        progress.filter(has_text="4 / 4 answered").wait_for()
        assert page.locator("#finished").is_visible()
    finally:
        server.stop()
    with Store(results / "bench.sqlite") as st:
        assert len(st.annotations(annotator=ANN)) == 4


def test_pairs_in_the_browser(page, smoke: tuple[Path, list[str]]) -> None:
    results, ids = smoke
    server = AnnotationServer(Catalogue(results, ids, task="pair")).start()
    try:
        page.goto(server.url + "&annotator=" + ANN)  # an id in the URL starts at once
        progress = page.locator("#progress")
        progress.filter(has_text="0 / 4 answered").wait_for()
        assert page.locator("#question").text_content() == "Which reconstruction is closer to the original?"
        wait_until_decoded(page, ["original", "left", "right"])
        sides = []
        for how in ("ArrowLeft", "click-right"):
            left = page.locator("#img-left").get_attribute("src").split("?")[0].split("/")
            right = page.locator("#img-right").get_attribute("src").split("?")[0].split("/")
            chosen = left if how == "ArrowLeft" else right
            sides.append((chosen[2], int(chosen[3])))
            if how == "ArrowLeft":
                page.keyboard.press("ArrowLeft")
            else:
                page.click("#answer-right")
            progress.filter(has_text=f"{len(sides)} / 4 answered").wait_for()
    finally:
        server.stop()
    with Store(results / "bench.sqlite") as st:
        rows = st.pair_annotations(annotator=ANN)
    closer = [(p["run_a"], p["index_a"]) if p["choice"] == "a" else (p["run_b"], p["index_b"]) for p in rows]
    assert sorted(closer) == sorted(sides)

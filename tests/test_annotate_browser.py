"""The annotation page in headless Chromium: answer with the keyboard and a click, reload (resumes, progress shown),
export the CSV. The answers are constructed by the test (annotator id `constructed-browser`)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from bench.annotations.items import Catalogue
from bench.annotations.server import AnnotationServer
from bench.run.plan import RunRequest
from bench.run.runner import execute
from bench.store import Store

ANN = "constructed-browser"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser-results")
    execute(RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4, metrics=("psnr",), results=out,
                       progress=False))
    shutil.rmtree(out / "cache", ignore_errors=True)
    return out


def test_annotate_in_the_browser_reload_resumes_and_exports(page, results: Path, tmp_path: Path) -> None:
    server = AnnotationServer(Catalogue(results)).start()
    try:
        page.goto(server.url)
        page.fill("#annotator", ANN)
        page.click("#start")
        progress = page.locator("#progress")
        progress.filter(has_text="0 / 4 answered").wait_for()
        assert page.locator("#question").text_content() == "Is the reconstruction recognisable as the original?"
        # the images are really served (decoded by the browser) with the token the page carries
        page.wait_for_function("document.getElementById('img-original').naturalWidth > 0"
                               " && document.getElementById('img-reconstruction').naturalWidth > 0")
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

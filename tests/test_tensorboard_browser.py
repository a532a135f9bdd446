"""TensorBoard seen in a real browser (issue 17 item 7): ``dltrain tb`` serving a finished fit and a
cross-validation, its page opened in headless Chromium (Debian's ``chromium``, driven by Playwright
with ``executable_path``; no ``playwright install``). TensorBoard serves its whole frontend itself,
fonts included, so the page needs no internet: every request elsewhere is refused. Skips where
Playwright or Chromium is missing (a fresh machine running the README's test command); .ci/run
installs both and sets DLTRAIN_BROWSER_TEST=required, under which a missing one fails instead."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import copy_run

TIMEOUT_MS = 120_000  # a loaded machine: Playwright's locators wait up to this long for each check


def _chromium() -> str:
    """The system Chromium, or a skip (a failure where CI asked for the browser test) saying what is missing."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "Playwright is not installed (pip install playwright)"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if missing is None and browser is None:
        missing = "no Chromium browser on PATH (Debian/Ubuntu: apt-get install chromium)"
    if missing is None:
        return browser
    if os.environ.get("DLTRAIN_BROWSER_TEST") == "required":
        pytest.fail(f"the browser test must run here (DLTRAIN_BROWSER_TEST=required), but {missing}")
    pytest.skip(missing)


def look_at_tensorboard(url: str, browser_path: str, runs: list[str], images: list[str]) -> None:
    """The scalars dashboard lists ``runs`` (by name, nothing else) and draws the loss and accuracy
    cards, one line per run at least; the images dashboard shows the confusion matrix of each of
    ``images``, loaded."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            # Offline: TensorBoard's own server answers everything the page needs.
            page.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())

            page.goto(url + "#scalars", wait_until="domcontentloaded")
            names = page.locator("tf-scalar-dashboard tf-multi-checkbox .item-label-container span")
            expect(names).to_have_count(len(runs), timeout=TIMEOUT_MS)
            assert sorted(names.all_inner_texts()) == sorted(runs)
            page.locator("tf-scalar-dashboard tf-tag-filterer input").fill("^(loss|accuracy)/")
            for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val"):
                card = page.locator("tf-scalar-card").filter(has=page.get_by_text(tag, exact=True)).first
                expect(card).to_be_visible(timeout=TIMEOUT_MS)
                # a drawn line ("M x y L x y ...") for each run at least (smoothed ones come on top)
                expect(card.locator("path.line[d*='L']").nth(len(runs) - 1)).to_be_attached(timeout=TIMEOUT_MS)

            page.goto(url + "#images", wait_until="domcontentloaded")
            figures = page.locator("tf-image-dashboard tf-image-loader").filter(
                has=page.get_by_text("figures/confusion_matrix", exact=True))
            expect(figures).to_have_count(len(images), timeout=TIMEOUT_MS)
            for run in images:
                picture = figures.filter(has=page.get_by_text(run, exact=True)).locator("img")
                expect(picture).to_be_visible(timeout=TIMEOUT_MS)
                page.wait_for_function("image => image.complete && image.naturalWidth > 0",
                                       arg=picture.element_handle(), timeout=TIMEOUT_MS)
        finally:
            browser.close()


@pytest.mark.slow
def test_tensorboard_shows_a_fit_and_a_cross_validation_in_chromium(cli, monkeypatch, iris_fit_run):
    import dltrain.commands.tb

    browser_path = _chromium()
    fit = copy_run(iris_fit_run)  # a finished fit with its events (conftest.py)
    # two epochs: a line of two points in every card for each fold
    result = cli("cv", "k=2", "data=iris", "trainer.epochs=2", "trainer.progress=false",
                 "trainer.checkpoint_every_seconds=0")
    assert result.exit_code == 0, result.output
    (summary,) = Path("outputs").glob("**/cv_summary.json")
    cv = summary.parent.relative_to("outputs").as_posix()
    fit_run = f"{fit.relative_to('outputs').as_posix()}/{fit.name}"  # its events' folder is named after it
    runs = [fit_run, f"{cv}/fold_0/fold_0", f"{cv}/fold_1/fold_1", f"{cv}/cv_mean"]
    seen = {}

    def look_then_ctrl_c(server):  # once dltrain tb has printed its URL, the server answers
        seen["url"] = server.url
        try:
            look_at_tensorboard(server.url, browser_path, runs, images=[fit_run, f"{cv}/cv_mean"])
        except BaseException as error:  # reported by the test, not as dltrain's own failure
            seen["error"] = error
        raise KeyboardInterrupt  # Ctrl-C: dltrain tb stops TensorBoard

    monkeypatch.setattr(dltrain.commands.tb, "wait_for_interrupt", look_then_ctrl_c)
    result = cli("tb", "--port", "0", "outputs")
    if "error" in seen:
        raise seen["error"]
    assert result.exit_code == 0, result.output
    assert seen["url"] in result.output.replace("\n", "") and "TensorBoard stopped." in result.output

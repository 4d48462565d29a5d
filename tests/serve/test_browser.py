"""``svllreid serve`` driven in headless Chromium as a user drives it: choose a photo, see the ranked
gallery; type a description, see results; click a result and see it become the query. Screenshots of
each step are written (``SVLLREID_SCREENSHOTS=DIR`` keeps them) and checked for what they must show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import CALIBRATED_ROW, free_port, serving, wait_until_up

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get install chromium chromium-driver (scripts/test.sh does this where it can)"


def find_browser() -> tuple[str, str]:
    """Chromium and its driver, or a skip that says what is missing."""
    pytest.importorskip("selenium", reason="the browser test needs selenium (in the dev extra)")
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("a Chromium browser", browser), ("chromedriver", driver)) if not p)
        pytest.skip(f"no browser to drive: {missing} not found; install them with {INSTALL}")
    return browser, driver


@pytest.fixture(scope="module")
def served(world: dict[str, Any]) -> Iterator[str]:
    """``svllreid serve`` as a user starts it, in its own process."""
    port = free_port()
    env = {**os.environ, "SVLLREID_CACHE": str(Path(world["folder"]) / "cache")}
    command = [sys.executable, "-m", "svllreid", "serve", "--index", str(world["index"]), "--port", str(port),
               "--device", "cpu"]  # fmt: skip
    log = Path(world["folder"]) / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(port, timeout=120, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    # An explicit driver: Selenium Manager would try to download one.
    page = webdriver.Chrome(service=Service(driver), options=options)
    page.set_page_load_timeout(60)
    yield page
    page.quit()


def screenshot(page: Any, name: str, tmp_path: Path) -> np.ndarray:
    folder = Path(os.environ.get("SVLLREID_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"serve-{name}.png"
    page.save_screenshot(str(file))
    with Image.open(file) as shot:
        return np.asarray(shot.convert("RGB")).astype(np.int16)


def pixels_near(shot: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    return int((np.abs(shot - np.array(colour)).sum(axis=2) < tolerance).sum())


GREEN, RED = (26, 127, 55), (207, 34, 46)  # the page's match / mismatch borders


def test_photo_then_description_then_a_clicked_result(served: str, browser: Any, world: dict, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(testid: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")

    def hits() -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, "[data-testid=hit]")

    def wait_for(condition: Any, what: str) -> None:
        WebDriverWait(browser, 30).until(lambda _: condition(), message=f"the page did not show {what}")

    def thumbnails_loaded() -> bool:
        script = "return [...document.querySelectorAll('[data-testid=hit] img')]"
        return bool(browser.execute_script(script + ".every(i => i.complete && i.naturalWidth > 0)"))

    browser.get(served)
    wait_for(lambda: "58 gallery images" in browser.find_element(By.ID, "about").text, "the model's description")

    # 1. Choose a photo (a gallery image of identity 4, camera 3): the ranked gallery, itself first.
    photo = next(p for p in world["images"] if Path(p).name.startswith("0004_c3"))
    find("file").send_keys(photo)
    wait_for(lambda: len(hits()) == 12, "12 results for the photo")
    wait_for(thumbnails_loaded, "the thumbnails")
    first = hits()[0].text
    assert "#1" in first and "1.0000" in first and "id 4 · cam 3" in first
    assert f"for {Path(photo).name}" in find("status").text
    assert find("query-image").get_attribute("src").startswith("blob:")
    shot = screenshot(browser, "1-photo", tmp_path)
    assert shot.shape[1] == 1280 and shot.std() > 20  # a page with pictures, not a blank one

    # 2. Type a description: results ranked by f_proj against the text.
    caption = world["captions"][0]
    find("text").send_keys(caption.caption)
    find("search-text").click()
    wait_for(lambda: "for the description" in find("status").text, "results for the description")
    wait_for(thumbnails_loaded, "the thumbnails")
    assert caption.caption in find("query").text and len(hits()) == 12
    assert "f_proj" in find("status").text
    screenshot(browser, "2-description", tmp_path)

    # 3. Click the third result: it becomes the query, leaves itself out, and matches are marked.
    third = hits()[2]
    clicked = third.get_attribute("data-index")
    third.click()
    wait_for(lambda: "for gallery image" in find("status").text, "results for the clicked image")
    wait_for(thumbnails_loaded, "the thumbnails")
    assert clicked not in [h.get_attribute("data-index") for h in hits()]
    classes = [h.get_attribute("class") for h in hits()]
    assert all("match" in c or "miss" in c for c in classes) and any("match" in c for c in classes)
    query_image = find("query-image")  # its thumbnail, fetched as the results' are
    wait_for(lambda: (query_image.get_attribute("src") or "").startswith("blob:"), "the query's thumbnail")
    assert query_image.get_attribute("data-row") == clicked
    shot = screenshot(browser, "3-clicked", tmp_path)
    assert pixels_near(shot, GREEN) > 300 and pixels_near(shot, RED) > 300  # the borders are drawn
    assert not find("error").is_displayed()


DROP_A_GALLERY_IMAGE = """
const done = arguments[arguments.length - 1];
fetch("/api/image/" + arguments[0]).then(r => r.blob()).then(blob => {
  const moved = new DataTransfer();
  moved.items.add(new File([blob], "dropped.jpg", {type: "image/jpeg"}));
  const zone = document.querySelector("[data-testid=drop]");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: moved, bubbles: true, cancelable: true}));
  const over = zone.classList.contains("over");
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: moved, bubbles: true, cancelable: true}));
  done(over);
});
"""


def test_a_photo_dropped_on_the_page_is_searched(served: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served)
    highlighted = browser.execute_async_script(DROP_A_GALLERY_IMAGE, 9)
    assert highlighted  # the drop zone shows that it takes the file
    status = browser.find_element(By.CSS_SELECTOR, "[data-testid=status]")
    WebDriverWait(browser, 30).until(lambda _: "for dropped.jpg" in status.text, message="no results for the drop")
    hits = browser.find_elements(By.CSS_SELECTOR, "[data-testid=hit]")
    assert len(hits) == 12 and hits[0].get_attribute("data-index") == "9"  # the gallery image itself first
    assert "over" not in browser.find_element(By.CSS_SELECTOR, "[data-testid=drop]").get_attribute("class")


def test_the_page_shows_the_servers_message_for_a_file_that_is_no_image(served: str, browser: Any, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served)
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a photo")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=file]").send_keys(str(notes))
    error = browser.find_element(By.CSS_SELECTOR, "[data-testid=error]")
    WebDriverWait(browser, 30).until(lambda _: error.is_displayed(), message="the page showed no error")
    assert "not an image in a format the server reads" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=hit]") == []
    screenshot(browser, "4-error", tmp_path)


@pytest.fixture(scope="module")
def served_calibrated(calibrated: dict) -> Iterator[str]:
    """The calibrated copy of the index (see conftest) served in this process."""
    with serving(calibrated["service"]) as server:
        yield server["url"]


def test_a_calibrated_model_marks_its_hits_same_or_other(served_calibrated: str, browser: Any, calibrated: dict,
                                                          world: dict, tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    threshold = calibrated["calibration"].threshold

    def find(testid: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")

    def hits() -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, "[data-testid=hit]")

    def wait_for(condition: Any, what: str) -> None:
        WebDriverWait(browser, 30).until(lambda _: condition(), message=f"the page did not show {what}")

    browser.get(served_calibrated)
    about = browser.find_element(By.ID, "about")
    wait_for(lambda: "same identity at FPR 1e-3" in about.text, "the model's operating point")

    # A photo of the gallery (the row the threshold splits): the operating point once, a badge on every hit.
    find("file").send_keys(calibrated["service"].index.paths[CALIBRATED_ROW])
    wait_for(lambda: len(hits()) == 12, "12 results for the photo")
    line = find("decision")
    assert line.is_displayed() and line.text == f"same identity at FPR 1e-3: similarity ≥ {threshold:.4f}"
    badges = [h.find_element(By.CSS_SELECTOR, "[data-testid=same-identity]").text for h in hits()]
    scores = [float(h.find_element(By.CSS_SELECTOR, ".score").text) for h in hits()]
    assert badges[0] == "same" and set(badges) == {"same", "other"}
    assert all((b == "same") == (s >= round(threshold, 4)) for b, s in zip(badges, scores, strict=True))

    # Click a result: a gallery query, decided the same way (its screenshot shows the green and grey badges).
    hits()[1].click()
    wait_for(lambda: "for gallery image" in find("status").text, "results for the clicked image")
    wait_for(lambda: all(h.find_elements(By.CSS_SELECTOR, "[data-testid=same-identity]") for h in hits()), "badges")
    screenshot(browser, "5-calibrated", tmp_path)

    # A description: the answer's message instead of a threshold, muted, and no badge.
    find("text").send_keys(world["captions"][0].caption)
    find("search-text").click()
    wait_for(lambda: "for the description" in find("status").text, "results for the description")
    assert "no same-identity decision for a description" in find("decision").text
    assert find("decision").get_attribute("class") == "muted"
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=same-identity]") == []


READ_TOKEN = "browser-test-read-token-0123456789"


@pytest.fixture(scope="module")
def served_with_token(service: Any) -> Iterator[str]:
    """The index served with a read token, in this process."""
    from svllreid.serve.tokens import Tokens

    with serving(service, tokens=Tokens(read=READ_TOKEN)) as server:
        yield server["url"]


def test_the_page_asks_for_the_token_once_and_sends_it(served_with_token: str, browser: Any, world: dict,
                                                        tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(testid: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")

    def wait_for(condition: Any, what: str) -> None:
        WebDriverWait(browser, 30).until(lambda _: condition(), message=f"the page did not show {what}")

    def enter(token: str) -> None:
        find("token").send_keys(token)
        find("token-submit").click()

    browser.get(served_with_token)
    wait_for(lambda: find("token-form").is_displayed(), "the form that asks for the token")
    assert "needs a token" in find("token-message").text
    shot = screenshot(browser, "6-token", tmp_path)
    backdrop = (148, 152, 157)  # the page's #f6f8fa under the form's rgba(29, 35, 43, .45)
    assert pixels_near(shot, backdrop, 12) > 500_000 and pixels_near(shot, (255, 255, 255), 3) > 30_000

    # A wrong token: asked again, with the server's reason.
    enter("not-the-token-but-long-enough")
    wait_for(lambda: "did not accept" in find("token-message").text, "that the token was wrong")
    assert find("token-form").is_displayed() and "not one of the server's" in find("token-message").text

    # The right one: the page loads, keeps it for this tab, and every call carries it (thumbnails too).
    enter(READ_TOKEN)
    about = browser.find_element(By.ID, "about")
    wait_for(lambda: "58 gallery images" in about.text, "the model's description")
    assert not find("token-form").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('svllreid.token')") == READ_TOKEN
    find("text").send_keys(world["captions"][0].caption)
    find("search-text").click()
    wait_for(lambda: "for the description" in find("status").text, "results for the description")
    script = "return [...document.querySelectorAll('[data-testid=hit] img')]"
    loaded = script + ".every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "[data-testid=hit]")) == 12, "12 results")
    wait_for(lambda: browser.execute_script(loaded), "the thumbnails, fetched with the token")
    shot = screenshot(browser, "7-token-results", tmp_path)
    assert shot.std() > 20 and pixels_near(shot, backdrop, 12) < 1000  # pictures, and the form gone

    # Reloaded, the page does not ask again.
    browser.get(served_with_token)
    wait_for(lambda: "58 gallery images" in browser.find_element(By.ID, "about").text, "the model's description")
    assert not find("token-form").is_displayed()


WRITE_TOKEN = "browser-test-write-token-9876543210"


@pytest.fixture(scope="module")
def served_live(world: dict[str, Any], service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A copy of the index (the world's is never changed) served with read and write tokens, in this process,
    looking for changes from other processes every 0.2 s."""
    from svllreid.search import GalleryIndex
    from svllreid.serve.search_service import SearchService
    from svllreid.serve.tokens import Tokens

    copy = GalleryIndex.load(world["index"]).save(tmp_path_factory.mktemp("live-page") / "gallery.npz")
    live = SearchService(GalleryIndex.load(copy), service.trained, index_path=copy)
    with serving(live, tokens=Tokens(read=READ_TOKEN, write=WRITE_TOKEN), refresh_seconds=0.2) as server:
        yield {**server, "index": copy}


def test_the_page_follows_a_gallery_that_changes_while_it_is_open(served_live: dict, browser: Any, world: dict,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """The user enters the token and searches by photo; an operator adds a copy of that photo to the gallery,
    then removes it: each time the page says the gallery changed and shows the results as they are now."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(testid: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")

    def rows() -> list[str]:  # read in one go: the page replaces its results when the gallery changes
        script = "return [...document.querySelectorAll('[data-testid=hit]')].map(h => h.dataset.index)"
        return list(browser.execute_script(script))

    def wait_for(condition: Any, what: str) -> None:
        WebDriverWait(browser, 30).until(lambda _: condition(), message=f"the page did not show {what}")

    url, write = served_live["url"], {"Authorization": f"Bearer {WRITE_TOKEN}"}
    browser.get(url)
    wait_for(lambda: find("token-form").is_displayed(), "the form that asks for the token")
    find("token").send_keys(READ_TOKEN)
    find("token-submit").click()
    about = browser.find_element(By.ID, "about")
    wait_for(lambda: "58 gallery images" in about.text, "the model's description")
    photo = next(p for p in world["images"] if Path(p).name.startswith("0004_c3"))
    find("file").send_keys(photo)
    wait_for(lambda: len(rows()) == 12, "12 results for the photo")
    assert "58" not in rows() and not find("gallery-note").is_displayed()

    # An operator adds a copy of the photo: the page sees it within seconds and asks its query again.
    added = httpx.post(f"{url}/api/gallery", files={"image": (Path(photo).name, Path(photo).read_bytes())},
                       data={"identity": "4", "camera": "9"}, headers=write, timeout=60)  # fmt: skip
    assert added.status_code == 201 and added.json()["rows"] == [58], added.text
    wait_for(lambda: "59 gallery images" in about.text, "the new gallery size")
    wait_for(lambda: "58" in rows()[:2], "the added copy among the first results")
    note = find("gallery-note")
    assert note.is_displayed() and "59 images now" in note.text and "results are updated" in note.text
    card = browser.find_element(By.CSS_SELECTOR, "[data-testid=hit][data-index='58']")
    assert "1.0000" in card.text and "id 4 · cam 9" in card.text
    screenshot(browser, "8-gallery-grew", tmp_path)

    # Then removes it: gone from the results, and its thumbnail from the server.
    assert httpx.delete(f"{url}/api/gallery/58", headers=write, timeout=60).status_code == 200
    wait_for(lambda: "58 gallery images" in about.text, "the smaller gallery")
    wait_for(lambda: "58" not in rows() and len(rows()) == 12, "the results without the removed copy")
    assert "58 images now" in find("gallery-note").text
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert httpx.get(f"{url}/api/thumbnail/58", headers=read, timeout=60).status_code == 404
    screenshot(browser, "9-gallery-shrank", tmp_path)

"""scripts/serve.py in a real browser: headless Chromium driven by Selenium.

Starts the server on a free port with two tiny checkpoints (a LeNet and an MLP trained for one
epoch on synth-digits), draws a "1" on the canvas, uploads a test image, a corrupt file and an
oversized one, and browses random test images. The page's answers must equal the serving
library's for the pixels the page shows. Skipped, with the reason, where Gradio, Selenium or
Chromium and its driver are missing (``.ci/run`` installs them).
"""
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a real browser and a Gradio server: slow (CI runs it)

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("gradio", reason="the drawing page needs Gradio: pip install -e '.[ui]'")
pytest.importorskip("selenium", reason="the browser test needs Selenium: pip install selenium")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("the browser test needs Chromium and its driver (Debian: apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from scripts.serving.models import load_served_model  # noqa: E402
from scripts.serving.predict import answer  # noqa: E402
from scripts.serving.preprocess import decode_image  # noqa: E402

UPLOAD_LIMIT_MB = 0.05


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two checkpoints, the server on a free port, and a headless Chromium on its page."""
    base = tmp_path_factory.mktemp("serve-browser")
    env = dict(os.environ, NNOTT_DATA=str(base / "data"), NNOTT_SYNTH_SIZES="300,100", MPLBACKEND="Agg",
               GRADIO_TEMP_DIR=str(base / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    common = ["--dataset", "synth-digits", "--epochs", "1", "--limit", "300", "--run-dir", str(base)]
    for cmd in (["convolutional/main.py", "lenet", *common, "--run-name", "cnn"],
                ["vectorized/main.py", *common, "--hidden-sizes", "32", "--run-name", "mlp"]):
        proc = subprocess.run([sys.executable, str(ROOT / cmd[0]), *cmd[1:]], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    cnn, mlp = next(base.glob("cnn-*/best.h5")), next(base.glob("mlp-*/best.h5"))
    port = _free_port()
    log = open(base / "server.log", "w")
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts/serve.py"), "--checkpoint", str(cnn),
                               "--checkpoint", str(mlp), "--port", str(port),
                               "--max-upload-mb", str(UPLOAD_LIMIT_MB)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    url = f"http://127.0.0.1:{port}/"
    driver = None
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"the server exited with {server.returncode}: {(base / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the server did not answer within 120 s")
                time.sleep(0.5)
        options = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
            options.add_argument(arg)
        options.binary_location = CHROMIUM
        driver = webdriver.Chrome(options=options, service=Service(DRIVER))
        driver.get(url)
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#sketch .pixi-target canvas"))
        os.environ["NNOTT_SYNTH_SIZES"] = env["NNOTT_SYNTH_SIZES"]   # the library's view of the same data
        yield {"driver": driver, "cnn": load_served_model(cnn), "mlp": load_served_model(mlp), "base": base,
               "url": url, "data": base / "data"}
    finally:
        os.environ.pop("NNOTT_SYNTH_SIZES", None)
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _text(driver, elem_id):
    return driver.find_element(By.ID, elem_id).text


def _wait_text(driver, elem_id, pattern, timeout=30):
    """Wait until element ``elem_id``'s text matches ``pattern``; return the match."""
    found = []

    def ready(d):
        m = re.search(pattern, d.find_element(By.ID, elem_id).text)
        found[:] = [m] if m else []
        return bool(m)

    WebDriverWait(driver, timeout).until(ready, message=f"#{elem_id} never showed {pattern!r}: "
                                                       f"{_text(driver, elem_id)!r}")
    return found[0]


def _shown_pixels(driver, elem_id) -> np.ndarray:
    """The model-input image the page shows, fetched as the browser got it: (C, H, W) uint8."""
    src = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} img").get_attribute("src")
    with urllib.request.urlopen(src, timeout=10) as resp:
        img = np.asarray(Image.open(io.BytesIO(resp.read())))
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def _check_page_equals_library(driver, panel, model):
    m = _wait_text(driver, f"pred-{panel}", r"Predicted class: (\S+) \((\d+\.\d)%\)")
    pixels = _shown_pixels(driver, f"input-{panel}")
    assert pixels.shape == model.input_shape
    probs = model.probabilities(pixels)[0]
    assert m.group(1) == model.class_names[probs.argmax()]
    assert m.group(2) == f"{100 * probs.max():.1f}"
    return m.group(1), pixels


def _choose(driver, elem_id, label):
    """Pick ``label`` in the dropdown ``elem_id``."""
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input").click()
    option = f"#{elem_id} li[role=option][aria-label='{label}']"
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, option))
    driver.find_element(By.CSS_SELECTOR, option).click()


def _upload(driver, path):
    driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Upload')]").click()
    clear = driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']")
    if clear:
        clear[0].click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def test_the_page_in_a_browser(served, tmp_path):
    driver, cnn, mlp = served["driver"], served["cnn"], served["mlp"]

    # 1. draw a "1" with the mouse: one stroke from top to bottom, slightly slanted
    canvas = driver.find_element(By.CSS_SELECTOR, "#sketch .pixi-target canvas")
    stroke = ActionChains(driver).move_to_element_with_offset(canvas, 12, -95).click_and_hold()
    for _ in range(19):
        stroke.move_by_offset(-1, 10)
    stroke.release().perform()
    _wait_text(driver, "status", "Your drawing")
    label_a, pixels = _check_page_equals_library(driver, "a", cnn)
    _check_page_equals_library(driver, "b", mlp)              # the MLP side by side, on the same drawing
    ink = pixels[0] > 64
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert rows[-1] - rows[0] >= 18 and cols[-1] - cols[0] <= 8   # a tall, thin "1" in the 20-pixel box
    assert driver.find_element(By.CSS_SELECTOR, "#maps-a img").is_displayed()   # conv: feature maps
    assert not driver.find_elements(By.CSS_SELECTOR, "#maps-b img")             # MLP: none
    driver.save_screenshot(str(tmp_path / "serve-drawing.png"))
    print(f"screenshot: {tmp_path / 'serve-drawing.png'} (model A says {label_a})")

    # 1b. switch model A to the MLP: the panel answers for the MLP and hides the feature maps
    _choose(driver, "model-a", mlp.label)
    WebDriverWait(driver, 30).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#maps-a img"))
    _check_page_equals_library(driver, "a", mlp)
    _choose(driver, "model-a", cnn.label)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#maps-a img"))
    _check_page_equals_library(driver, "a", cnn)

    # 1c. clear the canvas, then draw the same "1" with a finger (touch pointer events)
    driver.find_element(By.CSS_SELECTOR, "#sketch button[aria-label='Clear canvas']").click()
    _wait_text(driver, "status", "Draw a digit on the canvas")
    finger = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    finger.pointer_action.move_to(canvas, 12, -95).pointer_down()
    for k in range(1, 20):
        finger.pointer_action.move_to(canvas, 12 - k, -95 + 10 * k)
    finger.pointer_action.pointer_up()
    finger.perform()
    _wait_text(driver, "status", "Your drawing")
    _, touched = _check_page_equals_library(driver, "a", cnn)
    # the same stroke gives the same input, up to the one-pixel rounding of the centre of mass
    shifted = (np.roll(touched[0].astype(int), (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert min(np.abs(t - pixels[0].astype(int)).mean() for t in shifted) < 4

    # 2. upload a test image the library classifies correctly: the page must say the same label
    from common.data import load_dataset

    test = load_dataset("synth-digits", served["data"], seed=cnn.seed, progress=False)
    for i, (img, true) in enumerate(zip(test.x_test, test.y_test)):
        data = io.BytesIO()
        Image.fromarray(img[0]).save(data, format="PNG")
        if answer(cnn, decode_image(data.getvalue()), maps=False).predicted == cnn.class_names[true]:
            break
    else:
        pytest.fail("the tiny model classifies no test image correctly")
    digit = tmp_path / "digit.png"
    digit.write_bytes(data.getvalue())
    _upload(driver, digit)
    _wait_text(driver, "status", "Uploaded digit.png")
    label, _ = _check_page_equals_library(driver, "a", cnn)
    assert label == cnn.class_names[true]

    # 3. a corrupt file and an oversized one: messages on the page, and the page still works
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image")
    _upload(driver, broken)
    _wait_text(driver, "status", r"cannot read broken\.png as an image")
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(int(UPLOAD_LIMIT_MB * 2**20) + 1000))
    _upload(driver, big)
    WebDriverWait(driver, 20).until(lambda d: "exceed the maximum allowed size" in d.find_element(By.TAG_NAME, "body").text)

    # 4. random test images with both models' predictions; clicking one analyses it
    driver.find_element(By.ID, "browse").click()
    _wait_text(driver, "status", r"12 random test images of synth-digits")
    captions = re.findall(r"true (\d) · A: (\d) · B: (\d)", _text(driver, "gallery"))
    assert len(captions) == 12
    driver.find_elements(By.CSS_SELECTOR, "#gallery img")[0].click()
    true = _wait_text(driver, "status", r"Test image, true class (\d)").group(1)
    label, _ = _check_page_equals_library(driver, "a", cnn)
    assert (true, label) == captions[0][:2]
    driver.save_screenshot(str(tmp_path / "serve-test-image.png"))

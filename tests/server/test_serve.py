"""`cvzoo serve`: the JSON API through FastAPI's TestClient, and the page end to end in headless Chromium."""

import io
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from cvzoo.server import create_app  # noqa: E402
from tests.export.conftest import untrained_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return untrained_checkpoint(root / "best.pt", "classify", "lenet_mnist", "fashion_mnist_sample",
                                ["data.limit_train=16", "data.limit_val=16"])


@pytest.fixture(scope="module")
def png():
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_api_predicts_reports_timing_and_rejects_bad_uploads_without_stopping(weights, png):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(weights, topk=3))
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "<script src" not in page.text  # no CDN
    assert client.get("/info").json()["task"] == "classify"
    answer = client.post("/predict", files={"image": ("shoe.png", png, "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["task"] == "classify" and (body["width"], body["height"]) == (28, 28) and len(body["topk"]) == 3
    assert abs(sum(t["prob"] for t in body["topk"])) <= 1 + 1e-6
    assert 0 < body["time_ms"]["predict"] <= body["time_ms"]["total"]
    for name, data in (("broken.png", png[: len(png) // 2]), ("notes.txt", b"not an image at all"), ("empty.png", b"")):
        bad = client.post("/predict", files={"image": (name, data, "application/octet-stream")})
        assert bad.status_code == 400 and name in bad.json()["detail"], (name, bad.text)
    again = client.post("/predict", files={"image": ("shoe.png", png, "image/png")})
    assert again.status_code == 200 and again.json()["topk"] == body["topk"]  # still serving, same answer


def test_missing_serve_packages_name_the_extra(weights, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs uvicorn.*pip install 'cvzoo\[serve\]'"):
        create_app(weights)


def test_page_in_headless_chromium_shows_a_prediction(weights, png, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import uvicorn

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: apt-get install -y chromium (make test installs it)"
    server = uvicorn.Server(uvicorn.Config(create_app(weights), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not (server.started and server.servers) and time.time() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        (tmp_path / "shoe.png").write_bytes(png)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(tmp_path / "shoe.png"))
            page.wait_for_selector("body[data-done='1']", timeout=30000)
            status = page.text_content("#status")
            rows = page.locator("#result tr").count()
            page.screenshot(path=str(tmp_path / "prediction.png"))
            browser.close()
        assert "shoe.png: 28x28, predicted in" in status and rows == 6  # header + top-5
        shot = np.asarray(Image.open(tmp_path / "prediction.png").convert("L"))
        assert shot.shape[1] > 100 and len(np.unique(shot)) > 10  # a drawn page, not a blank one
    finally:
        server.should_exit = True
        thread.join(timeout=10)

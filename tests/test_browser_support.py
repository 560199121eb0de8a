"""The browser fixture itself: a page served on localhost is loaded and clicked in headless Chromium."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


def test_headless_chromium_loads_and_clicks(page, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<button id=b onclick=\"this.textContent='clicked'\">go</button>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert page.text_content("#b") == "go"
        page.click("#b")
        assert page.text_content("#b") == "clicked"
    finally:
        server.shutdown()

"""The admin API's bound URL reaches ``run_forever``'s ``on_admin_listening`` (how a worker of ``--workers N``
tells its parent where it listens): with ``PORT=0`` the port the system picked, not the setting."""

from __future__ import annotations

import threading
import urllib.request

from aiohttp import web

from config.settings import load_settings
from consumer.service import AdminApp, ScorerService
from tests.helpers import wait_for


def test_the_bound_url_is_handed_over_and_answers() -> None:
    service = ScorerService(load_settings(env={"PORT": "0", "HOST": "127.0.0.1"}, config_path=None))
    app = web.Application()
    app.router.add_get("/ping", lambda _request: web.json_response({"pong": True}))
    urls: list[str] = []
    answers: list[bytes] = []

    def call_then_stop() -> None:  # the serve runs on the main thread (it installs signal handlers)
        try:
            if wait_for(lambda: urls, 10):
                with urllib.request.urlopen(f"{urls[0]}/ping", timeout=5) as answer:
                    answers.append(answer.read())
        finally:
            service._stopped.set()  # nothing started: the serve ends as a loop end

    caller = threading.Thread(target=call_then_stop, daemon=True)
    caller.start()
    assert service.run_forever(lambda _service: AdminApp(app, None), on_admin_listening=urls.append) == 0
    caller.join(10)
    (url,) = urls
    scheme, host, port = url.split(":")
    assert (scheme, host) == ("http", "//127.0.0.1") and int(port) > 0
    assert answers == [b'{"pong": true}']

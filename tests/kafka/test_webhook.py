"""Webhook mode against a local HTTP server that fails, times out, answers 429 and rejects: each trigger
arrives signed; 5xx, timeouts and 429 are retried (429 after its Retry-After), other 4xx dead-lettered."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from router import Publisher, SubscriptionStore
from router.delivery.webhook import verify
from tests.harness import header, read_all, wait_until

SECRET = "s3cret-for-tests"


class Endpoint:
    """Answers by the event's `mode`: ok; fail-once (500, then 200); slow-once (sleeps past the runner's
    timeout, then 200); busy-once (429 with Retry-After: 1, then 200); reject (422, always)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                doc = json.loads(body)
                mode = doc["event"]["data"]["mode"]
                with endpoint.lock:
                    seen = sum(1 for c in endpoint.calls if c["mode"] == mode)
                    endpoint.calls.append({"mode": mode, "t": time.time(), "attempt": doc["attempt"],
                                           "ikey": self.headers["Evbus-Idempotency-Key"],
                                           "signed": verify(SECRET.encode(), body, self.headers["Evbus-Signature"])})
                status, extra = 200, {}
                if seen == 0 and mode == "fail-once":
                    status = 500
                elif seen == 0 and mode == "slow-once":
                    time.sleep(2.5)
                elif seen == 0 and mode == "busy-once":
                    status, extra = 429, {"Retry-After": "1"}
                elif mode == "reject":
                    status = 422
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):  # the runner gave up waiting (timeout)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, mode: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["mode"] == mode]


def test_webhook_mode_retries_what_users_expect_and_dead_letters_the_rest(bus, spawn, start_router):
    endpoint = Endpoint()
    try:
        SubscriptionStore(bus).put(name="engine", tenant="acme", workflow="hook", patterns=["hook.*"],
                                   max_attempts=4)
        start_router()
        spawn("work", "--workflow", "hook", "--webhook", endpoint.url, "--timeout", "1", "--backoff", "0.1",
              "--concurrency", "4", "--metrics-port", "0", name="webhook-runner", env={"EVBUS_WEBHOOK_SECRET": SECRET},
              ready="consuming")
        modes = ["ok", "fail-once", "slow-once", "busy-once", "reject"]
        with Publisher(bus) as pub:
            ids = {m: pub.publish("hook.call", {"mode": m}, tenant="acme", key=m) for m in modes}
        dead = read_all(bus, bus.trigger_topic("hook") + ".dlq", expect=1, timeout=60)
        wait_until(lambda: all(len(endpoint.of(m)) >= 2 for m in modes[1:4]), 30, "each retried mode twice")
        time.sleep(1.5)  # nothing more should come
        assert [c["attempt"] for c in endpoint.of("ok")] == [1]
        for mode in ("fail-once", "slow-once", "busy-once"):
            assert [c["attempt"] for c in endpoint.of(mode)] == [1, 2], mode  # retried once, then done
        busy = endpoint.of("busy-once")
        assert busy[1]["t"] - busy[0]["t"] >= 1.0  # Retry-After honoured
        assert [c["attempt"] for c in endpoint.of("reject")] == [1]  # a 4xx is not retried
        assert all(c["signed"] for c in endpoint.calls)
        assert all(c["ikey"] == f"{ids[c['mode']]}:engine" for c in endpoint.calls)
        assert len(dead) == 1
        assert header(dead[0], "evbus-dlq-reason") == "permanent"
        assert header(dead[0], "evbus-dlq-error-type") == "router.delivery.policy.PermanentError"
        assert "answered 422" in header(dead[0], "evbus-dlq-error")
    finally:
        endpoint.server.shutdown()


def test_webhook_mode_refuses_to_start_without_a_secret(bus, spawn):
    proc = spawn("work", "--workflow", "hook", "--webhook", "http://127.0.0.1:9/x", "--metrics-port", "0",
                 name="no-secret", env={"EVBUS_WEBHOOK_SECRET": ""})
    assert proc.proc.wait(30) == 1
    assert "needs a signing secret" in proc.output()

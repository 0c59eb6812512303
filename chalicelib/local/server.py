"""``make run``: the local stack kept up on 127.0.0.1 for trying Aftercare by hand.

- the API (``POST /events``, the Twilio webhooks) on http://127.0.0.1:8000 via
  Chalice's local server, the handlers running against in-process moto;
- an event source mapping that delivers the events queue to the ingest function;
- a scheduler that invokes the tick every ``--tick-seconds`` and delivers the
  sends queue to the send function, then Twilio's status callbacks;
- the outbox, ``out/outbox.txt``, appended as messages go out.

``--speed`` makes business time run faster than real time (1440: a day a
minute), so a check-in two days after delivery goes out two minutes after the
curl command. Signature replay windows still use the real clock.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from chalicelib import clock

LOCK = threading.RLock()  # moto in-process is not built for concurrent requests


class _LockedApp:
    """The Chalice app, one invocation at a time (shared with the scheduler)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __call__(self, event: Any, context: Any) -> Any:
        with LOCK:
            return self._app(event, context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


class _Outbox:
    def __init__(self, stack: Any, path: Path) -> None:
        self.stack = stack
        self.path = path
        self.seen: set[str] = set()
        path.write_text("")

    def flush(self) -> int:
        new = 0
        with self.path.open("a", encoding="utf-8") as fh:
            for m in self.stack.twilio.messages:
                if m["sid"] not in self.seen:
                    self.seen.add(m["sid"])
                    fh.write(f"=== {clock.iso(clock.now())}  SMS to {m['to']}\n{m['body']}\n\n")
                    new += 1
            for e in self.stack.sent_emails():
                if e["id"] not in self.seen:
                    self.seen.add(e["id"])
                    fh.write(f"=== {clock.iso(clock.now())}  EMAIL to {', '.join(e['to'])}\n"
                             f"Subject: {e['subject']}\n{e['body']}\n\n")
                    new += 1
        return new


def _scheduler(stack: Any, outbox: _Outbox, tick_seconds: float, stop: threading.Event) -> None:
    next_tick = 0.0
    now_file = outbox.path.with_name("now.txt")
    now_next = outbox.path.with_name("now.txt.next")
    while not stop.is_set():
        # Business time runs ahead of the wall clock: scripts/post-event.sh reads it
        # here so the events it posts happen "now" for the stack.  Written aside and
        # renamed: a reader never sees the file empty, between truncation and write.
        now_next.write_text(clock.iso(clock.now()) + "\n")
        os.replace(now_next, now_file)
        with LOCK:
            stack.pump("events", "ingest")
            if time.monotonic() >= next_tick:
                stack.tick()
                stack.pump("sends", "send")
                stack.twilio.deliver_callbacks()
                next_tick = time.monotonic() + tick_seconds
            sent = outbox.flush()
        if sent:
            print(f"{clock.iso(clock.now())}  {sent} message(s) sent, see {outbox.path}",
                  flush=True)
        stop.wait(0.2)


def _port_taken(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ("" when it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def run_server(out: Path, host: str = "127.0.0.1", port: int = 8000, speed: float = 1.0,
               tick_seconds: float = 1.0, duration: float | None = None) -> int:
    """Serve until interrupted (or for ``duration`` seconds, for tests)."""
    from chalice.cli.factory import CLIFactory
    from chalice.local import LocalDevServer

    from chalicelib.local.stack import LocalStack

    taken = _port_taken(host, port)
    if taken:
        print(f"aftercare run: cannot listen on {host}:{port} ({taken}): stop what uses "
              f"it, or use --port (make run PORT=...)", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    with LocalStack(outbox_dir=out, env={"PUBLIC_BASE_URL": f"http://{host}:{port}"}) as stack:
        campaigns = stack.push_campaigns()
        clock.run_faster(speed)
        factory = CLIFactory(str(stack.root), environ=dict(os.environ))
        config = factory.create_config_obj(chalice_stage_name="local")
        server = LocalDevServer(_LockedApp(stack.app), config, host, port)  # type: ignore[arg-type]
        stop = threading.Event()
        worker = threading.Thread(target=_scheduler, daemon=True,
                                  args=(stack, _Outbox(stack, out / "outbox.txt"),
                                        tick_seconds, stop))
        worker.start()
        web = threading.Thread(target=server.serve_forever, daemon=True)
        web.start()
        print(f"aftercare local stack: http://{host}:{port} (campaigns: {', '.join(campaigns)}); "
              f"business time x{speed:g}; outbox {out / 'outbox.txt'}; Ctrl-C to stop",
              flush=True)
        try:
            if duration is None:
                while web.is_alive():
                    web.join(1)
            else:
                time.sleep(duration)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            server.shutdown()
            worker.join(5)
            clock.set_now(None)
    return 0

"""Prism serving Twilio's published OpenAPI spec, for contract tests.

On first use ``@stoplight/prism-cli@5`` is installed into ``build/prism/`` with
npm (the tests skip, saying so, only when npm itself is missing). Each Prism is
started with ``--errors`` on 127.0.0.1 and a port it picks itself (``-p 0``,
read back from its "Prism is listening on" line, so no port race), and is
stopped by pid at teardown.

How Prism reports a contract violation with ``--errors``:

- invalid request: HTTP 422, ``application/problem+json``, ``type`` ending in
  ``#UNPROCESSABLE_ENTITY`` and a ``validation`` list of
  ``{"location": [...], "severity": "Error", "code": ..., "message": ...}``;
- missing or non-Basic credentials: HTTP 401, ``type`` ending in ``#UNAUTHORIZED``;
- (``prism proxy`` only) upstream response not matching the spec: HTTP 500,
  ``type`` ending in ``#VIOLATIONS``, the same ``validation`` list, also in the
  ``sl-violations`` header. A status the spec does not list (Twilio's 4xx) is
  only a warning and passes through unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib.local.twilio_server import LocalTwilioServer

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "twilio" / "twilio_api_v2010.json"
PRISM_DIR = ROOT / "build" / "prism"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
START_TIMEOUT = 90.0
_LISTENING = re.compile(r"Prism is listening on (http://127\.0\.0\.1:\d+)")

TIMINGS: dict[str, str] = {}


@dataclass(frozen=True)
class Credentials:
    """The Twilio account the contract tests use (Prism only checks Basic is present)."""

    account_sid: str = "AC" + "0123456789abcdef" * 2
    auth_token: str = "contract-test-token"

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"


@dataclass
class Prism:
    """A running Prism process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class PrismProxy:
    """Prism proxying to a LocalTwilioServer: checks requests and responses."""

    prism: Prism
    upstream: LocalTwilioServer

    @property
    def url(self) -> str:
        return self.prism.url


def _install_prism() -> Path:
    if PRISM_BIN.exists():
        TIMINGS.setdefault("npm install", "already in build/prism (skipped)")
        return PRISM_BIN
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not found: Prism contract tests need Node.js and npm (CI has them)")
    started = time.monotonic()
    done = subprocess.run(
        [npm, "install", "--prefix", str(PRISM_DIR), "--no-audit", "--no-fund", PRISM_PACKAGE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not PRISM_BIN.exists():
        pytest.fail(f"npm install {PRISM_PACKAGE} failed:\n{done.stdout}\n{done.stderr}")
    TIMINGS["npm install"] = f"{time.monotonic() - started:.1f} s"
    return PRISM_BIN


def _start_prism(binary: Path, args: list[str], log: Path) -> Prism:
    """Start ``prism <args>`` and wait for its listening line."""
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), *args], stdout=out, stderr=subprocess.STDOUT)
    while time.monotonic() - started < START_TIMEOUT:
        if found := _LISTENING.search(log.read_text(errors="replace")):
            TIMINGS[f"prism {args[0]} start"] = f"{time.monotonic() - started:.1f} s"
            return Prism(found[1], process, log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    prism = Prism("", process, log)
    prism.stop()
    pytest.fail(f"prism {args[0]} did not start:\n{prism.log_tail()}")


def _prism_args(mode: str, *upstream: str) -> list[str]:
    if not SPEC.is_file():
        pytest.fail(f"Twilio OpenAPI spec not found at {SPEC}")
    return [mode, "--errors", "-h", "127.0.0.1", "-p", "0", str(SPEC), *upstream]


@pytest.fixture(scope="session")
def credentials() -> Credentials:
    """Account sid and auth token for requests to Prism and the local server."""
    return Credentials()


@pytest.fixture(scope="session")
def prism_bin() -> Path:
    """The prism executable, installed on first use."""
    return _install_prism()


@pytest.fixture(scope="session")
def prism_mock(prism_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    """``prism mock --errors``: validates requests, answers with the spec's examples."""
    log = tmp_path_factory.mktemp("prism") / "mock.log"
    prism = _start_prism(prism_bin, _prism_args("mock"), log)
    yield prism
    prism.stop()


@pytest.fixture(scope="session")
def prism_proxy(
    prism_bin: Path, credentials: Credentials, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrismProxy]:
    """``prism proxy --errors`` in front of a LocalTwilioServer."""
    with LocalTwilioServer(credentials.account_sid, credentials.auth_token) as upstream:
        log = tmp_path_factory.mktemp("prism") / "proxy.log"
        prism = _start_prism(prism_bin, _prism_args("proxy", upstream.base_url), log)
        yield PrismProxy(prism, upstream)
        prism.stop()


@pytest.fixture
def start_prism_proxy(prism_bin: Path, tmp_path: Path) -> Iterator[Callable[[str], Prism]]:
    """Start a one-off ``prism proxy --errors`` in front of any upstream URL."""
    started: list[Prism] = []

    def start(upstream: str) -> Prism:
        prism = _start_prism(prism_bin, _prism_args("proxy", upstream), tmp_path / "proxy.log")
        started.append(prism)
        return prism

    yield start
    for prism in started:
        prism.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long installing and starting Prism took."""
    if TIMINGS:
        summary = ", ".join(f"{name}: {value}" for name, value in TIMINGS.items())
        terminalreporter.write_line(f"prism timings: {summary}")

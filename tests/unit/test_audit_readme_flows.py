"""README.md and docs/ followed as a new user would: the `make run` flow run as written.

The flow test starts one `aftercare run` on 127.0.0.1 (business time sped up so the
care tip a week after delivery arrives in seconds), then runs the README's own shell
lines: `scripts/post-event.sh` (only `URL` set, for the port) and the "by hand"
curl block (only the port changed), and the docs/api.md curl example (only `URL` and
`KEY` set: there is no Secrets Manager locally). It stops the server by its pid.

The strict xfails are mismatches between the docs (or `aftercare --help`) and what
happens; see the reason of each.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
API_MD = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
NEW_YORK = ZoneInfo("America/New_York")
HAVE_TOOLS = all(shutil.which(t) for t in ("bash", "curl", "openssl"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _readme_try_by_hand() -> tuple[list[str], str]:
    """The two sh blocks of README "Try it by hand": script lines, curl block."""
    section = README.split("## Try it by hand", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, blocks
    posts = [line for line in blocks[0].splitlines() if line.startswith("scripts/post-event.sh")]
    return posts, blocks[1]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _sh(script: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=20, env={"PATH": "/usr/bin:/bin", **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- promises that hold ---------------------------------------------------------------


@pytest.mark.skipif(not HAVE_TOOLS, reason="needs bash, curl and openssl")
def test_readme_make_run_flow_as_written(tmp_path: Path) -> None:
    """README "Try it by hand": post-event.sh prints the accepted id, the outbox gets
    the SMS check-in (two to three business days after the delivery: "about three
    minutes" at x1440) and then the care-tip email; the by-hand curl block and the
    docs/api.md curl example are accepted; errors have the documented body."""
    posts, by_hand = _readme_try_by_hand()
    assert posts == ["scripts/post-event.sh order.placed evt-1 o-1001      "
                     "# prints {\"accepted\":[\"evt-1\"],...}",
                     "scripts/post-event.sh order.delivered evt-2 o-1001"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli.main", "run", "--out", str(tmp_path / "out"),
         "--port", str(port), "--speed", "40000", "--tick-seconds", "0.25",
         "--duration", "50"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not (tmp_path / "out" / "now.txt").exists():
            assert time.time() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

        # The README's lines, run where `out/now.txt` is (only URL set: another port).
        script_env = {"URL": f"{url}/events"}
        outputs, posted_at = [], []
        for line in posts:
            command = str(ROOT / line.split("#")[0].strip())
            posted_at.append(_time((tmp_path / "out" / "now.txt").read_text()))
            outputs.append(json.loads(_sh(command, tmp_path, script_env)))
        assert outputs == [{"accepted": ["evt-1"], "rejected": []},
                           {"accepted": ["evt-2"], "rejected": []}]

        outbox = tmp_path / "out" / "outbox.txt"
        deadline = time.time() + 40
        while "EMAIL to ana@example.com" not in outbox.read_text():
            assert time.time() < deadline and server.poll() is None, outbox.read_text()
            time.sleep(0.3)
        text = outbox.read_text()
        sms = re.search(r"=== (\S+)  SMS to \+14155550123\nHi Ana, your Kettle", text)
        mail = re.search(r"=== (\S+)  EMAIL to ana@example.com\n"
                         r"Subject: Getting the most from your Kettle\n", text)
        assert sms is not None and mail is not None, text
        assert sms.start() < mail.start()  # "the SMS check-in, then the care tip"
        # P2D at 10:00 New York time after the delivery: due two to three days after it
        # ("about three minutes" at x1440), sent at the first tick from then.
        local = posted_at[1].astimezone(NEW_YORK) + timedelta(days=2)
        due = local.replace(hour=10, minute=0, second=0, microsecond=0)
        due += timedelta(days=1) if due < local else timedelta(0)
        assert timedelta(days=2) <= due - posted_at[1] <= timedelta(days=3)
        assert due <= _time(sms.group(1)) <= due + timedelta(hours=12), (due, sms.group(1))

        # The by-hand block, only the port changed.
        assert by_hand.count("http://127.0.0.1:8000/events") == 1
        reply = _sh(by_hand.replace("http://127.0.0.1:8000", url), tmp_path)
        assert json.loads(reply) == {"accepted": ["evt-3"], "rejected": []}

        # docs/api.md's curl example, URL and KEY given instead of read from AWS.
        example = re.search(r"```sh\n(URL=.*?)```", API_MD, re.S)
        assert example is not None
        lines = example.group(1).splitlines()
        assert lines[0].startswith("URL=") and lines[1].startswith("KEY=")
        body = "\n".join(line for line in lines[3:] if not line.startswith("#"))
        script = "\n".join([lines[0].split()[0].split("=")[0] + f"={url}",
                            "KEY=local-events-hmac-key", body])
        assert json.loads(_sh(script, tmp_path)) == {"accepted": ["evt-0001"], "rejected": []}

        # Errors: {"Code", "Message"}, the app's and Chalice's own 415 alike.
        unsigned = _sh(f"curl -sS -o - -w '\\n%{{http_code}}' -X POST {url}/events "
                       "-H 'Content-Type: application/json' -d '{}'", tmp_path).splitlines()
        assert unsigned[-1] == "401"
        assert json.loads(unsigned[0]) == {"Code": "UnauthorizedError",
                                           "Message": "missing X-Aftercare-Signature header"}
        plain = _sh(f"curl -sS -o - -w '\\n%{{http_code}}' -X POST {url}/events "
                    "-H 'Content-Type: text/plain' -d x", tmp_path).splitlines()
        assert plain[-1] == "415" and set(json.loads(plain[0])) == {"Code", "Message"}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def test_generate_writes_a_seeded_log_that_simulate_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README: `aftercare generate --out FILE` writes a seeded sample event log (the
    same bytes for the same seed), which `aftercare simulate --events FILE` reads
    with no bad line; simulate's table ends with the documented summary."""
    from chalicelib.cli.main import main

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["generate", "--customers", "40", "--out", str(first)]) == 0
    assert main(["generate", "--customers", "40", "--out", str(second)]) == 0
    out, _ = capsys.readouterr()
    lines = first.read_bytes().splitlines()
    assert f"wrote {len(lines)} events to {first}" in out
    assert first.read_bytes() == second.read_bytes()
    assert main(["simulate", "--events", str(first), "--campaigns", str(ROOT / "campaigns"),
                 "--templates", str(ROOT / "templates"), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.rstrip().splitlines()[-1].startswith(
        f"{len(lines)} events (0 duplicates, 0 bad); ")


# --- defects --------------------------------------------------------------------------


def test_api_md_sign_header_with_the_snippets_key() -> None:
    import hashlib
    import hmac

    from chalicelib.api.signature import sign_header

    snippet = re.search(r"```python\n(import hashlib.*?)```", API_MD, re.S)
    assert snippet is not None and "key.encode()" in snippet.group(1)
    key = "local-events-hmac-key"  # a str, as the snippet's `key.encode()` implies
    body, t = json.dumps({"id": "evt-1"}).encode(), 1_700_000_000
    sig = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert "sign_header(key.encode(), t, body)" in API_MD  # as the docs call it
    assert sign_header(key.encode(), t, body) == f"t={t},v1={sig}"


def _aws_refuses(*_: object, **__: object) -> None:
    from pynamodb.exceptions import QueryError

    # What `aftercare push`/`backfill` meet without credentials (seen with env -i).
    raise QueryError("Failed to query items: Unable to locate credentials")


def test_backfill_reports_an_aws_error_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main
    from chalicelib.pipeline import backfill

    monkeypatch.setattr(backfill, "run_backfill", _aws_refuses)
    try:
        code = main(["backfill", "--checkpoint", str(tmp_path / "cp.json")])
    except Exception as exc:  # the defect: it escapes as a traceback
        pytest.fail(f"traceback: {exc!r}")
    _, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_push_reports_an_aws_error_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main
    from chalicelib.store import campaigns

    monkeypatch.setattr(campaigns, "push", _aws_refuses)
    try:
        code = main(["push", str(ROOT / "campaigns" / "birthday.json"), "--templates",
                     str(ROOT / "templates"), "--no-backfill"])
    except Exception as exc:  # the defect: it escapes as a traceback
        pytest.fail(f"traceback: {exc!r}")
    _, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_generate_out_a_folder_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main

    try:
        code = main(["generate", "--customers", "2", "--out", str(tmp_path)])
    except Exception as exc:  # the defect: it escapes as a traceback
        pytest.fail(f"traceback: {exc!r}")
    _, err = capsys.readouterr()
    assert code == 1 and str(tmp_path) in err


def test_run_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli.main", "run", "--out", str(tmp_path),
             "--port", str(port), "--duration", "1"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-300:]
    assert str(port) in proc.stderr

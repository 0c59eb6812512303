"""The unzipped `chalice package` artifact works on its own.

Build it first: `make package` (CI runs `make package-smoke`). Without an artifact
these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.package
PACKAGE_DIR = Path(os.environ.get("AFTERCARE_PACKAGE_DIR", ROOT / "build" / "package"))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    zipped = PACKAGE_DIR / "deployment.zip"
    if not zipped.exists():
        pytest.skip(f"no artifact at {zipped}: run `make package` first")
    # Its compiled wheels are for the Lambda runtime's Python (`make package` builds
    # with 3.13): under another Python they cannot load, so `make package-smoke`,
    # which runs these tests with that Python, is where they run.
    sam = PACKAGE_DIR / "sam.json"
    runtimes = set(re.findall(r'"Runtime": "(python[0-9.]+)"', sam.read_text())) \
        if sam.exists() else set()
    here = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if runtimes and runtimes != {here}:
        pytest.skip(f"artifact built for {', '.join(sorted(runtimes))}, this is {here}: "
                    "run `make package-smoke`")
    out = tmp_path_factory.mktemp("artifact")
    with zipfile.ZipFile(zipped) as zf:
        zf.extractall(out)
    # The chalice test client reads stage settings from .chalice/config.json (config,
    # not code); nothing else from the repository is copied.
    (out / ".chalice").mkdir()
    (out / ".chalice" / "config.json").write_text((ROOT / ".chalice" / "config.json").read_text())
    return out


def test_artifact_has_no_repository_only_files(artifact: Path) -> None:
    assert (artifact / "app.py").is_file() and (artifact / "chalicelib").is_dir()
    assert not (artifact / "tests").exists() and not (artifact / "templates").exists()


def test_unzipped_artifact_sends_an_sms_on_its_own(artifact: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AFTERCARE_"))}
    proc = subprocess.run(
        [sys.executable, "-S", str(Path(__file__).with_name("smoke.py")), str(artifact),
         sysconfig.get_paths()["purelib"], str(ROOT / "campaigns"), str(ROOT / "templates")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["sms"]) == 1 and "Sam" in result["sms"][0]
    for name, path in result["modules"].items():
        assert path.startswith(str(artifact)), f"{name} imported from {path}, not the artifact"
    assert set(result["modules"]) >= {"app", "chalicelib", "jinja2", "twilio", "pynamodb"}


def test_packaged_template_wires_the_stage_queues() -> None:
    sam = json.loads((PACKAGE_DIR / "sam.json").read_text()) if (
        PACKAGE_DIR / "sam.json").exists() else pytest.skip("no sam.json")
    resources = sam["Resources"]
    queues = [
        ev["Properties"]["Queue"]
        for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
        for ev in r["Properties"].get("Events", {}).values() if ev["Type"] == "SQS"
    ]
    stage = os.environ.get("AFTERCARE_PACKAGE_STAGE", "dev")
    assert any(f"aftercare-{stage}-events" in json.dumps(q) for q in queues), queues
    assert any(f"aftercare-{stage}-sends" in json.dumps(q) for q in queues), queues
    schedules = [ev for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
                 for ev in r["Properties"].get("Events", {}).values()
                 if ev["Type"] == "Schedule"]
    assert schedules and schedules[0]["Properties"]["Schedule"] == "rate(1 minute)"


def test_packaged_api_checks_iam_on_the_admin_routes_only() -> None:
    """The IAM authorizer is enforced by API Gateway, which the test client is not:
    the packaged API definition must put SigV4 on the report routes, and on no route
    whose callers (Twilio, recipients, signed event senders) are not AWS principals."""
    sam = json.loads((PACKAGE_DIR / "sam.json").read_text()) if (
        PACKAGE_DIR / "sam.json").exists() else pytest.skip("no sam.json")
    (api,) = [r for r in sam["Resources"].values() if r["Type"] == "AWS::Serverless::Api"]
    swagger = api["Properties"]["DefinitionBody"]
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    signed = {(path, method) for path, methods in swagger["paths"].items()
              for method, spec in methods.items() if spec.get("security") == [{"sigv4": []}]}
    every = {(path, method) for path, methods in swagger["paths"].items()
             for method in methods if method != "options"}
    assert signed == {("/reports", "get"), ("/reports/{campaign_id}", "get")}
    assert {p for p, _ in every} >= {"/events", "/webhooks/twilio/inbound", "/reports"}

"""Run inside a fresh interpreter whose path starts with the unzipped artifact.

Usage: python -S smoke.py ARTIFACT_DIR SITE_PACKAGES CAMPAIGNS TEMPLATES
``-S`` keeps the repository (an editable install's .pth file) off the path; the
test tools (moto) come from SITE_PACKAGES, appended after the artifact so that
everything the artifact ships shadows the development environment.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

artifact, site_packages, campaigns, templates = (Path(a) for a in sys.argv[1:5])
sys.path.insert(0, str(artifact))
sys.path.append(str(site_packages))

from chalicelib.local.stack import LocalStack  # noqa: E402

SHIPPED = ("app", "chalicelib", "jinja2", "twilio", "pynamodb", "babel", "pydantic",
           "aws_lambda_powertools", "boto3", "botocore")

event = {"id": "smoke-1", "type": "order.delivered", "occurred_at": "2026-03-01T14:02:00Z",
         "customer": {"id": "c-smoke-1",  # not in the 10% holdout
                       "phone": "+14155550123", "email": "s@example.com",
                      "name": "Sam", "timezone": "America/New_York",
                      "consent": {"sms": True, "email": True}},
         "order": {"id": "o-1", "total": 10.0, "currency": "USD",
                   "items": [{"sku": "KX-200", "name": "Kettle", "quantity": 1,
                              "price": 10.0}]}}

with LocalStack(project_root=artifact, direct=True) as stack:
    stack.push_campaigns(campaigns, templates)
    from chalicelib import clock

    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    stack.ingest([event])
    stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    sms = stack.twilio.messages
    modules = {name: sys.modules[name].__file__ for name in SHIPPED if name in sys.modules}
    print(json.dumps({"sms": [m["body"] for m in sms], "modules": modules}))

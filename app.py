"""Aftercare's Chalice app: wiring only; the logic lives in chalicelib."""

from __future__ import annotations

from typing import Any

from chalice import Chalice, IAMAuthorizer, Rate, Response

from chalicelib import api, handlers, settings

app = Chalice(app_name="aftercare")

# Event-source names are read here, at import, before stage variables apply
# (aws/chalice#1385): they follow the aftercare-{stage}-{what} convention, with
# the stage taken from AFTERCARE_STAGE (set by `make package/deploy STAGE=...`).
EVENTS_QUEUE = settings.resource_name("events")
SENDS_QUEUE = settings.resource_name("sends")
SES_EVENTS_QUEUE = settings.resource_name("ses-events")


@app.on_sqs_message(queue=EVENTS_QUEUE, batch_size=10, name="ingest")
def ingest(event: Any) -> dict[str, Any]:
    return handlers.ingest_batch(event)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="tick")
def tick(event: Any) -> dict[str, int]:
    return handlers.tick(getattr(event, "context", None))


@app.on_sqs_message(queue=SENDS_QUEUE, batch_size=10, name="send")
def send(event: Any) -> dict[str, Any]:
    return handlers.send_batch(event)


@app.on_sqs_message(queue=SES_EVENTS_QUEUE, batch_size=10, name="ses_events")
def ses_events(event: Any) -> dict[str, Any]:
    return handlers.ses_events_batch(event)


@app.route("/events", methods=["POST"], content_types=["application/json"])
def post_events() -> Response:
    return _http(api.post_events)


@app.route("/webhooks/twilio/status", methods=["POST"],
           content_types=["application/x-www-form-urlencoded"])
def twilio_status() -> Response:
    return _http(api.twilio_status)


@app.route("/webhooks/twilio/inbound", methods=["POST"],
           content_types=["application/x-www-form-urlencoded"])
def twilio_inbound() -> Response:
    return _http(api.twilio_inbound)


@app.route("/l/unsubscribe/{token}", methods=["GET"])
def unsubscribe_page(token: str) -> Response:
    return _http(api.unsubscribe_page)


@app.route("/l/unsubscribe/{token}", methods=["POST"],
           content_types=["application/x-www-form-urlencoded", "multipart/form-data",
                          "text/plain"])
def unsubscribe(token: str) -> Response:
    return _http(api.unsubscribe)


@app.route("/l/survey/{token}", methods=["GET"])
def survey_page(token: str) -> Response:
    return _http(api.survey_page)


@app.route("/l/survey/{token}", methods=["POST"],
           content_types=["application/x-www-form-urlencoded"])
def survey_answer(token: str) -> Response:
    return _http(api.survey_answer)


# Admin routes: API Gateway lets through only callers whose SigV4-signed request an
# IAM policy allows (execute-api:Invoke); see docs/api.md, "Reports".
ADMIN = IAMAuthorizer()


@app.route("/reports", methods=["GET"], authorizer=ADMIN)
def list_reports() -> Response:
    return _http(api.list_reports)


@app.route("/reports/{campaign_id}", methods=["GET"], authorizer=ADMIN)
def campaign_report(campaign_id: str) -> Response:
    return _http(api.campaign_report)


def _http(handler: api.Handler) -> Response:
    """Chalice's request in, the framework-free handler, Chalice's response out."""
    req = app.current_request
    assert req is not None
    query = req.query_params
    request = api.HttpRequest.build(req.method, req.path, dict(req.headers), req.raw_body,
                                    req.uri_params,
                                    {k: query.getlist(k) for k in query} if query else None)
    reply = api.dispatch(handler, request)
    headers: dict[str, str | list[str]] = dict(reply.headers)
    return Response(body=reply.body, status_code=reply.status, headers=headers)

"""``GET|POST /l/survey/{token}``: a survey answer from the link in a message.

The token (signed, expiring) names the message and the survey kind. GET shows the
question with one button per score; POST records the score on the message, once:
a second answer changes nothing. Stats get one response, the score sum, and for
NPS the promoters (9-10) and detractors (0-6), so CSAT averages and NPS come from
counters, never from scanning messages.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qsl

from pynamodb.transactions import TransactWrite

from chalicelib import clock
from chalicelib.api.consent import verified_link
from chalicelib.api.errors import BadRequestError, NotFoundError
from chalicelib.api.http import HttpRequest, HttpResponse
from chalicelib.journeys.messages import SURVEY_QUESTIONS
from chalicelib.pipeline.stats import stat_ops
from chalicelib.store.models import MessageModel
from chalicelib.store.tx import RequiredConditionFailed, Transaction, commit

SCALES = {"csat": range(1, 6), "nps": range(0, 11), "ces": range(1, 8)}
_HTML = {"Content-Type": "text/html; charset=utf-8"}


def _kind(request: HttpRequest) -> tuple[str, str]:
    payload = verified_link(request, "survey")
    kind = payload.get("k")
    if kind not in SCALES:
        raise NotFoundError("this link is not valid")
    return str(payload["m"]), str(kind)


def survey_page(request: HttpRequest) -> HttpResponse:
    _message_id, kind = _kind(request)
    buttons = "".join(f"<button name=score value={n}>{n}</button>" for n in SCALES[kind])
    page = (f"<!doctype html><title>Survey</title><form method=post>"
            f"<p>{html.escape(SURVEY_QUESTIONS[kind])}</p>{buttons}</form>")
    return HttpResponse(200, page, _HTML)


def _score(request: HttpRequest, kind: str) -> int:
    form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
    try:
        score = int(form.get("score", ""))
    except ValueError:
        raise BadRequestError("score: a whole number is required") from None
    if score not in SCALES[kind]:
        raise BadRequestError(f"score: {kind} answers go from {SCALES[kind][0]} "
                              f"to {SCALES[kind][-1]}")
    return score


def record_answer(message_id: str, kind: str, score: int) -> bool:
    """Store one answer on its message and in the stats; False if already answered."""
    try:
        msg = MessageModel.get(message_id)
    except MessageModel.DoesNotExist:
        raise NotFoundError("this link is not valid") from None
    counters = ["survey_responses"] + ["survey_score_sum"] * score
    if kind == "nps":
        counters += ["promoters"] if score >= 9 else ["detractors"] if score <= 6 else []
    arm = "treatment"
    key = (msg.campaign_id, msg.variant, arm, msg.decided_at[:10])

    def answer(tw: TransactWrite) -> None:
        tw.update(msg, actions=[MessageModel.survey_kind.set(kind),
                                MessageModel.survey_score.set(score),
                                MessageModel.survey_at.set(clock.iso(clock.now()))],
                  condition=MessageModel.message_id.exists()
                  & MessageModel.survey_score.does_not_exist())

    try:
        commit(Transaction(required=[answer, *stat_ops((key, c) for c in counters)]))
    except RequiredConditionFailed:
        return False
    return True


def survey_answer(request: HttpRequest) -> HttpResponse:
    message_id, kind = _kind(request)
    recorded = record_answer(message_id, kind, _score(request, kind))
    text = "Thank you!" if recorded else "We already have your answer. Thank you!"
    return HttpResponse(200, f"<!doctype html><title>Thank you</title><p>{text}</p>", _HTML)

"""Email through Amazon SES v2, with outcomes classified for at-most-once sending."""

from __future__ import annotations

from typing import Any

from chalicelib.channels.base import EmailMessage, SendResult

_RETRYABLE = {"TooManyRequestsException", "ThrottlingException", "LimitExceededException",
              "SendingPausedException"}
_PERMANENT = {"MessageRejected", "BadRequestException", "MailFromDomainNotVerifiedException",
              "NotFoundException", "AccountSuspendedException", "ValidationException"}


class SesEmailChannel:
    """Send with ``sesv2.send_email`` (Simple content: subject, HTML, text, headers)."""

    def __init__(self, sesv2: Any, from_address: str, configuration_set: str | None = None) -> None:
        self._ses = sesv2
        self._from = from_address
        self._config_set = configuration_set

    def request(self, msg: EmailMessage, tags: dict[str, str]) -> dict[str, Any]:
        simple: dict[str, Any] = {
            "Subject": {"Data": msg.subject, "Charset": "UTF-8"},
            "Body": {
                "Html": {"Data": msg.html, "Charset": "UTF-8"},
                "Text": {"Data": msg.text, "Charset": "UTF-8"},
            },
        }
        if msg.headers:
            simple["Headers"] = [{"Name": k, "Value": v} for k, v in msg.headers.items()]
        request: dict[str, Any] = {
            "FromEmailAddress": self._from,
            "Destination": {"ToAddresses": [msg.to]},
            "Content": {"Simple": simple},
            "EmailTags": [{"Name": k, "Value": v} for k, v in tags.items()],
        }
        if self._config_set:
            request["ConfigurationSetName"] = self._config_set
        return request

    def send(self, msg: EmailMessage, tags: dict[str, str] | None = None) -> SendResult:
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
        )

        try:
            response = self._ses.send_email(**self.request(msg, tags or {}))
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in _RETRYABLE or status == 429:
                return SendResult("retryable", error_code=code, error_message=err.get("Message"))
            if code in _PERMANENT or 400 <= status < 500:
                return SendResult("permanent", error_code=code, error_message=err.get("Message"))
            return SendResult("ambiguous", error_code=code or str(status),
                              error_message=err.get("Message"))
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            return SendResult("retryable", error_code="connect", error_message=type(exc).__name__)
        except Exception as exc:
            return SendResult("ambiguous", error_code="transport", error_message=type(exc).__name__)
        return SendResult("accepted", provider_id=response.get("MessageId"), status="sent")

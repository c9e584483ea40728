"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, with the status
OpenAI's clients expect for each kind of failure."""

import json
from dataclasses import dataclass, field


@dataclass
class GatewayError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


def bad_request(message: str, *, param: str | None = None, code: str | None = None):
    return GatewayError(400, message, param=param, code=code)


def invalid_key() -> GatewayError:
    return GatewayError(
        401,
        "Incorrect API key provided: use a live deployment key (Authorization: Bearer sk-tp-…).",
        code="invalid_api_key",
    )


def unknown_model(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


@dataclass
class UpstreamFailure(Exception):
    """An engine failed before the gateway sent the client a byte: the canary falls back to
    stable on it; otherwise the client gets 502 (an error answer) or 504 (a timeout)."""

    status: int  # what the client gets: 502 or 504
    reason: str  # short, for the telemetry row's `error`
    upstream_status: int | None = None  # the engine's own status, where it answered

    @property
    def recorded_status(self) -> int:
        return self.upstream_status or self.status

    def as_error(self) -> GatewayError:
        kind = "timeout" if self.status == 504 else "upstream_error"
        message = f"The model's engine failed: {self.reason}."
        return GatewayError(self.status, message, type="server_error", code=kind)

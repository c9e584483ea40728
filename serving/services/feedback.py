"""End users' feedback on answers, sent through the gateway (`POST /v1/feedback`) and joined
to the answer's telemetry row by its request id. Feedback is end-user traffic, like the
requests it judges: it is validated, not audited one by one."""

from django.core.exceptions import ValidationError
from django.db import transaction

from serving.models import Feedback, RequestRecord

COMMENT_MAX = 2000


@transaction.atomic
def feedback_record(
    *,
    deployment_id: int,
    request_id: str,
    score: float,
    comment: str = "",
    key_id: int | None = None,
) -> Feedback:
    """Store a score in [-1, 1] (thumbs up 1, down -1) for one answer of `deployment_id`.
    Raises LookupError when that deployment recorded no request with this id (another
    deployment's request is the same as none), ValidationError naming a bad field."""
    if isinstance(score, bool) or not isinstance(score, int | float) or not -1 <= score <= 1:
        raise ValidationError({"score": "A score from -1 to 1."})
    if len(comment) > COMMENT_MAX:
        raise ValidationError({"comment": f"At most {COMMENT_MAX} characters."})
    known = RequestRecord.objects.filter(
        deployment_id=deployment_id, request_id=request_id
    ).exists()
    if not known:
        raise LookupError(request_id)
    return Feedback.objects.create(
        deployment_id=deployment_id,
        request_id=request_id,
        score=float(score),
        comment=comment or None,
        key_id=key_id,
    )

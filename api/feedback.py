"""Feedback on served recommendations (fleet key): what the driver did with each offer."""

from __future__ import annotations

from flask import g
from flask_smorest.error_handler import ErrorSchema

from .auth import FLEET, SECURITY, require
from .parsing import Blueprint
from .schemas import FeedbackSchema
from .services import services

blp = Blueprint("feedback", __name__, url_prefix="/v1/feedback",
                description="What drivers did with the offers they were shown (fleet key)")


@blp.route("", methods=["POST"])
@require(FLEET)
@blp.arguments(FeedbackSchema)
@blp.response(200, FeedbackSchema)
@blp.alt_response(404, schema=ErrorSchema,
                  description="No such recommendation for this fleet, or the offer was not in "
                              "it (recommendations are kept for 7 days)")
@blp.doc(security=SECURITY)
def feedback(body: dict):
    """Report what a driver did with a recommended offer

    accept, redeem and dismiss update the driver's model at once (the next recommendation
    reflects them); every event is logged for training and offline evaluation. Sending the
    same event again counts once (`counted: false`)."""
    found = services()
    counted = found.learning.feedback(g.principal.id, body["recommendation_id"],
                                      body["offer_id"], body["event"], found.learner())
    return {**body, "counted": counted}

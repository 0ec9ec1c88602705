"""Prometheus metrics. Labels never carry message content or phone numbers."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram


@cache
def count(metric: Counter, *labels: str) -> Counter:
    """The child of ``metric`` with these label values, looked up once: ``labels()`` validates
    and locks on every call, a measurable cost per message on the hot path."""
    return metric.labels(*labels)


inbound_messages = Counter(
    "smsline_inbound_messages_total", "Inbound SMS stored, by outcome.", ["status"]
)
inbound_duplicates = Counter(
    "smsline_inbound_duplicates_total", "Redelivered inbound SMS (or parts) recognised and skipped."
)
inbound_store_failures = Counter(
    "smsline_inbound_store_failures_total",
    "Deliveries answered with a temporary error because they could not be stored.",
)
ack_latency = Histogram(
    "smsline_ack_latency_seconds",
    "From the deliver_sm of a request to the submit_sm of its acknowledgement.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
submits = Counter(
    "smsline_submits_total", "submit_sm responses by SMSC and outcome.", ["smsc", "outcome"]
)
messages_final = Counter(
    "smsline_messages_final_total", "Outbound messages reaching a final status.", ["status"]
)
receipts = Counter("smsline_receipts_total", "Delivery receipts received, by status.", ["status"])
receipts_unmatched = Counter(
    "smsline_receipts_unmatched_total", "Receipts whose message id matched no sent segment."
)
throttled = Counter(
    "smsline_smsc_throttled_total", "Times a bind was paused because the SMSC asked to slow down.", ["smsc"]
)
link_up = Gauge("smsline_smsc_link_up", "1 while the SMPP bind is up.", ["smsc"])
queue_depth = Gauge("smsline_dispatcher_ready", "Claimed messages waiting for a free window slot.")
requests_processed = Counter(
    "smsline_requests_processed_total", "Requests by SMS answered, by command.", ["command"]
)

"""The function of the platform conformance suite (`dask_serverless_platform::conformance`).

Every backend deploys this one handler, so that the suite's checks mean the same everywhere.
One event shape per behaviour:

- ``{"echo": value}``: returns ``{"echo": value}``;
- ``{"fail": message}``: raises ``ValueError(message)``;
- ``{"send": body, "endpoint": url, "queue_url": url}``: sends ``body`` to the queue with the
  SQS JSON protocol (standard library only: no SDK is needed in the function), returns
  ``{"sent": body}``;
- anything else: returns ``None``.
"""

import json
import urllib.request


def _send(endpoint, queue_url, body):
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=json.dumps({"QueueUrl": queue_url, "MessageBody": body}).encode(),
        headers={
            "X-Amz-Target": "AmazonSQS.SendMessage",
            "Content-Type": "application/x-amz-json-1.0",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def handle(event, context):
    if "echo" in event:
        return {"echo": event["echo"]}
    if "fail" in event:
        raise ValueError(event["fail"])
    if "send" in event:
        _send(event["endpoint"], event["queue_url"], event["send"])
        return {"sent": event["send"]}
    return None

"""The function of the platform conformance suite (`dask_serverless_platform::conformance`).

Every backend deploys this one handler, so that the suite's checks mean the same everywhere.
One event shape per behaviour:

- ``{"echo": value}``: returns ``{"echo": value}``;
- ``{"fail": message}``: raises ``ValueError(message)``;
- ``{"send": body, "endpoint": url, "queue_url": url}``: sends ``body`` to the queue with the
  SQS JSON protocol (standard library only: no SDK is needed in the function), returns
  ``{"sent": body}``;
- ``{"interval": token, "hold": seconds, "endpoint": url, "queue_url": url}``: runs for
  ``seconds``, then sends and returns ``{"interval": token, "start": s, "end": s, "pid": n}``
  (wall-clock seconds): when it ran, to count how many ran at once;
- anything else: returns ``None``.
"""

import json
import os
import time
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
    if "interval" in event:
        start = time.time()
        time.sleep(event["hold"])
        interval = {
            "interval": event["interval"],
            "start": start,
            "end": time.time(),
            "pid": os.getpid(),
        }
        _send(event["endpoint"], event["queue_url"], json.dumps(interval))
        return interval
    if "send" in event:
        _send(event["endpoint"], event["queue_url"], event["send"])
        return {"sent": event["send"]}
    return None

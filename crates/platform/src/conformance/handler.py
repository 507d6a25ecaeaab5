"""The function of the platform conformance suite (`dask_serverless_platform::conformance`).

Every backend deploys this one handler, so that the suite's checks mean the same everywhere.
One event shape per behaviour:

- ``{"echo": value}``: returns ``{"echo": value}``;
- ``{"fail": message}``: raises ``ValueError(message)``;
- ``{"send": body, "endpoint": url, "queue_url": url}``: sends ``body`` to the queue, returns
  ``{"sent": body}``;
- ``{"interval": token, "hold": seconds, "endpoint": url, "queue_url": url}``: runs for
  ``seconds``, then sends and returns ``{"interval": token, "start": s, "end": s, "pid": n}``
  (wall-clock seconds): when it ran, to count how many ran at once;
- anything else: returns ``None``.

Messages are sent with botocore when the runtime has it and credentials (every Python runtime
of Lambda does: botocore signs the request, and the signature names the function's region,
which an AWS-compatible endpoint needs to find the queue), else with a plain SQS JSON request
(the local platform's queue service needs no signature, and its workers no SDK).
"""

import json
import os
import time
import urllib.request


try:
    import botocore.session
except ImportError:  # pragma: no cover - depends on the runtime
    botocore = None


def _send(endpoint, queue_url, body):
    if botocore is not None and os.environ.get("AWS_ACCESS_KEY_ID"):
        sqs = botocore.session.get_session().create_client(
            "sqs", region_name=os.environ["AWS_REGION"], endpoint_url=endpoint
        )
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        return
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

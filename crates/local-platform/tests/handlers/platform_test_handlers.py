"""Handlers for the local platform's tests: each action exercises one behaviour of the platform.

The event is a JSON object whose "action" names what to do. Actions that stand for real work
write what they are doing to the progress file (DASK_SERVERLESS_PROGRESS_PATH), as the
project's handler does, so that the platform can name it when it kills the worker.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request


def _progress(text):
    path = os.environ.get("DASK_SERVERLESS_PROGRESS_PATH")
    if path:
        with open(path, "w") as progress:
            progress.write(text)


def _send_to_queue(endpoint, queue_url, body):
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps({"QueueUrl": queue_url, "MessageBody": body}).encode(),
        headers={
            "X-Amz-Target": "AmazonSQS.SendMessage",
            "Content-Type": "application/x-amz-json-1.0",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def handle(event, context):
    action = event.get("action", "echo")
    if action == "print":
        print(f"{event['text']} on stdout", flush=True)
        print(f"{event['text']} on stderr", file=sys.stderr, flush=True)
        # Lines are read from the pipes while the invocation goes on; one printed in its very
        # last instant may be read once the next one began (see the platform's output module).
        time.sleep(0.2)
        return {"printed": event["text"]}
    if action == "echo":
        return {"event": event, "pid": os.getpid()}
    if action == "environment":
        names = event["names"]
        return {
            "variables": {name: os.environ.get(name) for name in names},
            "cwd": os.getcwd(),
            "function_name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
    if action == "raise":
        raise ValueError(event.get("message", "boom"))
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"pid": os.getpid()}
    if action == "write_file":
        with open(event["path"], "w") as output:
            output.write(json.dumps({"pid": os.getpid(), "text": event["text"]}))
        return None
    if action == "send":
        time.sleep(event.get("seconds", 0))
        _send_to_queue(event["endpoint"], event["queue_url"], event["body"])
        return {"pid": os.getpid()}
    if action == "large_response":
        return "x" * event["size"]
    if action == "allocate":
        _progress("allocating task 'big-array'")
        chunks = []
        # Grows by 10 MiB steps, touching every page, until the platform kills the worker;
        # gives up at 4 GiB so that a platform that enforces nothing does not exhaust the host.
        while len(chunks) < 400:
            chunks.append(b"x" * (10 << 20))
            time.sleep(0.005)
        return {"allocated_mib": 10 * len(chunks)}
    if action == "timeout":
        _progress("task 'slow-sum'")
        time.sleep(event["seconds"])
        return {"pid": os.getpid()}
    if action == "exit":
        _progress("task 'crash'")
        os._exit(3)
    if action == "spawn_child":
        child = subprocess.Popen(["sleep", "300"])
        return {"pid": os.getpid(), "child_pid": child.pid}
    raise KeyError(f"unknown action {action!r}")

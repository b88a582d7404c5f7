"""How a Work Queue task and its node's runner talk, and who may.

A node runner (`~desc.gen3_workflow.execution.warm.node_runner`) listens on an
abstract Unix socket, which has no file permissions and which every user of
the node can list (``/proc/net/unix``) and connect to.  So:

- its name comes from the run's key (`socket_name`): nobody without the key
  can bind it before the runner does, to answer the run's tasks;
- the runner takes connections only from processes of its own user, and a
  task talks only to a runner of its own user (`peer`, ``SO_PEERCRED``);
- a request is one line, ``MAC JSON``, the MAC an HMAC-SHA256 of the JSON
  with the run's key (`encode_request`, `decode_request`): only a process
  that can read the key, the run's owner's, can ask for a job; the submit
  side signs nothing it did not plan;
- a request's log files must lie inside the run's submit directory
  (`misplaced_logs`): the runner appends to them as the run's owner.

Checking a request costs a few microseconds (one HMAC of under 2 KB).
Standard library only (Work Queue tasks import it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
from typing import Any

__all__ = ["NAME_TAKEN_EXIT", "decode_request", "encode_request", "misplaced_logs", "peer", "socket_name"]

NAME_TAKEN_EXIT = 3
"""A node runner's exit status when another runner of the run has its socket."""

_DIGEST = hashlib.sha256
_MAC_LENGTH = 2 * _DIGEST().digest_size
"""Hex digits of a request's MAC."""
_LOG_FIELDS = ("stdout", "stderr")


def socket_name(key: bytes) -> str:
    """The abstract socket of the run's runner on a node (the run's key
    names it, so that it cannot be foreseen)."""
    name = hmac.new(key, b"gen3wf node runner socket", _DIGEST).hexdigest()[:24]
    return f"\0gen3wf-runner-{name}"


def peer(conn: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a Unix socket
    (as the kernel recorded them when it connected or listened)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def encode_request(key: bytes, request: dict[str, Any]) -> bytes:
    """A request's line, signed with the run's key."""
    body = json.dumps(request).encode()
    return hmac.new(key, body, _DIGEST).hexdigest().encode() + b" " + body + b"\n"


def decode_request(key: bytes, line: bytes) -> dict[str, Any] | None:
    """The request in a line; `None` unless the line is signed with the
    run's key and holds a JSON object."""
    mac, _, body = line.strip().partition(b" ")
    expected = hmac.new(key, body, _DIGEST).hexdigest().encode()
    if len(mac) != _MAC_LENGTH or not hmac.compare_digest(mac, expected):
        return None
    try:
        request = json.loads(body)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def misplaced_logs(run_dir: str, request: dict[str, Any]) -> str | None:
    """Why a request's log files may not be written (one outside the run's
    submit directory, or missing), or `None` if they may."""
    root = os.path.normpath(os.path.abspath(run_dir))
    for field in _LOG_FIELDS:
        value = request.get(field)
        if not isinstance(value, str) or not value:
            return f"no {field} log file"
        # normpath, not realpath: no file system call per job; the submit
        # directory is the owner's, nobody else can put a link in it.
        path = os.path.normpath(os.path.join(root, value))
        if os.path.commonpath([root, path]) != root:
            return f"its {field} log {value!r} is outside the run's submit directory {root}"
    return None

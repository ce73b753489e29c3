"""A minimal SIP REGISTER client for SHA-256 digest (RFC 7616), which SIPp 3.6 cannot compute."""

from __future__ import annotations

import hashlib
import re
import socket
import uuid
from dataclasses import dataclass

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')


@dataclass(frozen=True)
class Exchange:
    first: int  # status of the unauthenticated REGISTER
    final: int  # status of the one with credentials


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _challenge(raw: bytes) -> dict[str, str]:
    for line in raw.decode().split("\r\n"):
        if line.lower().startswith("www-authenticate:"):
            return {m[0].lower(): m[1] or m[2] for m in _PARAM.findall(line.split(":", 1)[1])}
    raise AssertionError(f"no challenge in {raw!r}")


def register(
    target: tuple[str, int], local_ip: str, username: str, password: str, expires: int = 300
) -> Exchange:
    """REGISTER, answer the 401 with a SHA-256 digest response, return both statuses."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((local_ip, 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        uri = f"sip:{target[0]}:{target[1]}"

        def send(cseq: int, auth: str = "") -> bytes:
            msg = (
                f"REGISTER {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local_ip}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:{username}@sipdata.local>;tag={call_id[:10]}\r\n"
                f"To: <sip:{username}@sipdata.local>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{username}@{local_ip}:{port}>\r\nExpires: {expires}\r\n"
                f"{auth}Max-Forwards: 70\r\nUser-Agent: sipdata-e2e-sha256\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(msg.encode(), target)
            while True:
                raw = sock.recv(65535)
                if _status(raw) >= 200:
                    return raw

        first = send(1)
        if _status(first) != 401:
            return Exchange(_status(first), _status(first))
        ch = _challenge(first)

        def h(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        ha1 = h(f"{username}:{ch['realm']}:{password}")
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = h(f"{ha1}:{ch['nonce']}:{nc}:{cnonce}:auth:{h(f'REGISTER:{uri}')}")
        auth = (
            f'Authorization: Digest username="{username}", realm="{ch["realm"]}", '
            f'nonce="{ch["nonce"]}", uri="{uri}", response="{response}", algorithm=SHA-256, '
            f'qop=auth, nc={nc}, cnonce="{cnonce}"\r\n'
        )
        return Exchange(401, _status(send(2, auth)))

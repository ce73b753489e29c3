"""A carrier gateway for the gateway-health tests: answers OPTIONS probes and INVITEs (200
with SDP, then the BYE), and can go silent like a dead box. SIPp plays one scenario per
run; a gateway that is probed every second and also takes calls needs both at once."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

SDP = (
    "v=0\r\no=gw 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _headers(msg: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:[^\r\n]*", msg, re.MULTILINE | re.IGNORECASE)


@dataclass
class Gateway:
    ip: str
    port: int = 5060
    silent: bool = False  # a dead box: reads and answers nothing
    received: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def methods(self) -> list[str]:
        return [m.split(" ", 1)[0] for m in list(self.received)]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.silent:
                continue
            msg = data.decode(errors="replace")
            if msg.startswith("SIP/2.0"):
                continue
            self.received.append(msg)
            method = msg.split(" ", 1)[0]
            if method == "ACK":
                continue
            if method == "INVITE":
                # 200 alone: a 180 sent just before it may reach the caller after it
                # (Kamailio's workers relay them in parallel), which SIPp refuses
                body = SDP.format(ip=self.ip)
                self._reply(msg, peer, "200 OK", body, "application/sdp")
            else:  # OPTIONS, BYE, CANCEL
                self._reply(msg, peer, "200 OK")

    def _reply(
        self, msg: str, peer: tuple[str, int], status: str, body: str = "", ctype: str = ""
    ) -> None:
        lines = [f"SIP/2.0 {status}"]
        lines += _headers(msg, "Via")
        lines += _headers(msg, "Record-Route")
        lines += _headers(msg, "From")
        (to,) = _headers(msg, "To") or ["To: <sip:gw>"]
        lines.append(to if ";tag=" in to else f"{to};tag=gw{abs(hash(msg)) % 10**8}")
        lines += _headers(msg, "Call-ID") + _headers(msg, "CSeq")
        lines.append(f"Contact: <sip:gw@{self.ip}:{self.port}>")
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

"""Repeated failed logins slowed down: a client that fails ``limit`` times within ``window`` seconds is
locked out, and its next attempts are refused without a look at what they send.

- The first lockout lasts ``lockout`` seconds; each further one twice the last, up to ``max_lockout``.
- A success does not lift an active lockout, nor does it forget earlier failures: an attacker who holds
  the read token cannot interleave good requests to guess the write token faster.
- A client with no failure for ``max_lockout`` seconds is forgotten (back to a first lockout).
- At most ``max_clients`` clients are tracked: when full, those already forgotten go first, then the one
  whose last failure is oldest. So memory stays bounded, at the price that an attacker with very many
  addresses can push a locked-out address out of the table.

A client is an address as the server sees it (:func:`client_key`): IPv6 addresses count by their /64
network, which one host or household usually holds whole.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FailureThrottle", "client_key"]


def client_key(host: str | None) -> str:
    """The client a request comes from, for counting its failures: an IPv4 address, an IPv6 /64
    network (an IPv4-mapped IPv6 address as its IPv4 address), or the name given when it is no address."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)  # times of the failures within the window
    last: float = 0.0  # time of the last failure
    locked_until: float = 0.0
    lockouts: int = 0  # lockouts so far: the next one lasts lockout * 2**lockouts, at most max_lockout


class FailureThrottle:
    """Counts failed attempts per client and says when a client is locked out (thread-safe)."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 60.0,
        lockout: float = 30.0,
        max_lockout: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit < 1 or max_clients < 1 or not 0 < lockout <= max_lockout or window <= 0:
            raise ValueError(
                "the throttle needs limit >= 1, max_clients >= 1, window > 0 and 0 < lockout <= max_lockout; "
                f"got limit={limit}, max_clients={max_clients}, window={window}, lockout={lockout}, "
                f"max_lockout={max_lockout}"
            )
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_lockout = max_lockout
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recent failure first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The number of clients tracked."""
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again (rounded up, at least 1), or ``None`` when it is
        not locked out."""
        with self._lock:
            record = self._clients.get(client)
            left = record.locked_until - self.clock() if record is not None else 0.0
        return max(1, math.ceil(left)) if left > 0 else None

    def failed(self, client: str) -> float | None:
        """Count a failed attempt of ``client``; the length of the lockout in seconds when this failure
        starts one, else ``None``."""
        with self._lock:
            now = self.clock()
            record = self._clients.get(client)
            if record is None or now - record.last > self.max_lockout:
                record = self._track(client, now)
            self._clients.move_to_end(client)
            record.last = now
            while record.failures and now - record.failures[0] > self.window:
                record.failures.popleft()
            record.failures.append(now)
            if len(record.failures) < self.limit:
                return None
            length = min(self.lockout * 2**record.lockouts, self.max_lockout)
            record.lockouts += 1
            record.locked_until = now + length
            record.failures.clear()  # after the lockout, another `limit` failures lock it out again, longer
            return length

    def _track(self, client: str, now: float) -> _Client:
        """A fresh record for ``client``, room made for it (under the lock)."""
        self._clients.pop(client, None)
        while self._clients:  # the forgotten first (oldest last failure first) ...
            oldest = next(iter(self._clients.values()))
            if now - oldest.last <= self.max_lockout:
                break
            self._clients.popitem(last=False)
        while len(self._clients) >= self.max_clients:  # ... then the least recent, if still full
            self._clients.popitem(last=False)
        record = self._clients[client] = _Client()
        return record

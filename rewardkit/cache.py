"""Scores cached by content hash, for rewards that declare themselves deterministic.

A deterministic reward gives the same score to the same (prompt, completion,
reference, metadata) every time, so a repeated completion (common in
evaluation, and in training once a policy collapses onto a few outputs)
need not be scored twice. The key is a SHA-256 of those four fields plus the
reward's name and params, so two components with different params never
share an entry. Bounded: the least recently used entries go first.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

#: Entries kept per reward: a float and a 32-byte key each, so a few MB at most.
DEFAULT_MAX_ENTRIES = 100_000

_MISSING = object()


def content_key(reward_id: str, prompt: str, completion: str, reference: str | None, metadata: dict | None) -> bytes:
    """The cache key of one sample: a SHA-256 over the reward's identity and the sample's content.

    ``default=repr`` keeps metadata that JSON cannot encode hashable; such
    values only ever hit when their repr is identical.
    """
    payload = json.dumps([reward_id, prompt, completion, reference, metadata or {}],
                         sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(payload.encode("utf-8")).digest()


class ScoreCache:
    """A bounded LRU map from :func:`content_key` to a score (a float, or ``None`` for "cannot score").

    :param reward_id: identifies the reward and its params (see :func:`reward_identity`).
    :param max_entries: least recently used entries are dropped past this size.
    """

    def __init__(self, reward_id: str, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.reward_id = reward_id
        self.max_entries = max_entries
        self._data: OrderedDict[bytes, float | None] = OrderedDict()
        self._lock = threading.Lock()  # chunks of one batch may finish on different threads
        #: lookups and hits since the cache was made (the per-step counts live in FailureCounts)
        self.lookups = 0
        self.hits = 0

    def key(self, prompt: str, completion: str, reference: str | None, metadata: dict | None) -> bytes:
        """This cache's key for one sample."""
        return content_key(self.reward_id, prompt, completion, reference, metadata)

    def get(self, key: bytes) -> Any:
        """The cached score, or the module's ``_MISSING`` sentinel (use :meth:`lookup`)."""
        with self._lock:
            self.lookups += 1
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def lookup(self, key: bytes) -> tuple[bool, float | None]:
        """``(True, score)`` on a hit, ``(False, None)`` on a miss."""
        value = self.get(key)
        return (False, None) if value is _MISSING else (True, value)

    def put(self, key: bytes, value: float | None) -> None:
        """Remember one score."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups since the cache was made (0.0 before any lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


def reward_identity(name: str, params: Any) -> str:
    """A string naming a reward and its params, for :class:`ScoreCache`."""
    dump = params.model_dump(mode="json") if hasattr(params, "model_dump") else params
    return json.dumps([name, dump], sort_keys=True, default=repr)

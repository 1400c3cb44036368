# The QoS 1 outbox: messages wait here while the link is down and leave only after their
# PUBACK. Bounded; when full, the policy drops the oldest or refuses the new one, and every
# drop is counted and logged (never silent).
from firmware import log

_TAG = "outbox"


class Outbox:
    def __init__(self, size=20, policy="drop_oldest"):
        if policy not in ("drop_oldest", "refuse_new"):
            raise ValueError("outbox policy: %r is not drop_oldest or refuse_new" % (policy,))
        self.size = size
        self.policy = policy
        self._q = []
        self.dropped = 0

    def __len__(self):
        return len(self._q)

    def put(self, topic, payload):
        """Queue a message; False if the policy refused it."""
        if len(self._q) >= self.size:
            self.dropped += 1
            if self.policy == "refuse_new":
                log.error(_TAG, "full (%d): refused a message for %s (%d dropped so far)", self.size, topic, self.dropped)
                return False
            old = self._q.pop(0)
            log.error(_TAG, "full (%d): dropped the oldest message for %s (%d dropped so far)", self.size, old[0], self.dropped)
        self._q.append((topic, payload))
        return True

    def peek(self):
        return self._q[0] if self._q else None

    def pop(self):
        """Remove the head: call only after its PUBACK."""
        return self._q.pop(0)

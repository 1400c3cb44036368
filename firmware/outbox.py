# The QoS 1 outbox: messages wait here while the link is down and leave only after their
# PUBACK. Bounded; when full, the policy drops the oldest or refuses the new one, and every
# drop is counted and logged (never silent).
#
# With a folder (config "outbox_persist": true, "outbox_dir") every message is also in a
# journal on flash (firmware/journal.py, loaded only then): appended when queued, marked done
# when it leaves, replayed into the queue in order at start, so a reboot or a power cut loses
# none that had no PUBACK yet. A flash that is full or failing costs no message: it stays in
# RAM (counted in `ram_only`, the error logged) and is sent as usual; it is lost only if the
# board restarts before its PUBACK.
from firmware import log

_TAG = "outbox"


class Outbox:
    def __init__(self, size=20, policy="drop_oldest", folder=None):
        if policy not in ("drop_oldest", "refuse_new"):
            raise ValueError("outbox policy: %r is not drop_oldest or refuse_new" % (policy,))
        self.size = size
        self.policy = policy
        self._q = []
        self._seqs = []  # journal seq of each queued message (0: in RAM only)
        self.dropped = 0
        self.ram_only = 0  # messages the journal could not write: kept in RAM only
        self.journal_errors = 0  # failed journal writes (messages and done marks)
        self.replayed = 0  # messages taken back from the journal at start
        self.journal = None
        if folder:
            self._open(folder)

    def _open(self, folder):
        from firmware.journal import Journal

        j = Journal(folder)
        try:
            waiting = j.replay()
        except OSError as e:
            self._failed("cannot read %s (%s): starting with an empty outbox" % (folder, log.err(e)))
            waiting = []
        self.journal = j
        for seq, topic, payload in waiting:
            if len(self._q) >= self.size:  # a smaller "outbox" than before the restart
                self._drop_head()
            self._q.append((topic, payload))
            self._seqs.append(seq)
        self.replayed = len(waiting)
        if waiting:
            log.info(_TAG, "%d message(s) from %s waiting for their PUBACK (%d kept)", len(waiting), folder, len(self._q))

    def __len__(self):
        return len(self._q)

    def put(self, topic, payload):
        """Queue a message; False if the policy refused it."""
        if len(self._q) >= self.size:
            if self.policy == "refuse_new":
                self.dropped += 1
                log.error(_TAG, "full (%d): refused a message for %s (%d dropped so far)", self.size, topic, self.dropped)
                return False
            old = self._q[0][0]
            self._drop_head()
            log.error(_TAG, "full (%d): dropped the oldest message for %s (%d dropped so far)", self.size, old, self.dropped)
        seq = 0
        if self.journal is not None:
            try:
                seq = self.journal.put(topic, payload)
            except OSError as e:
                self.ram_only += 1
                self._failed("cannot write (%s): the message for %s is kept in RAM only (%d so far)"
                             % (log.err(e), topic, self.ram_only))
        self._q.append((topic, payload))
        self._seqs.append(seq)
        return True

    def peek(self):
        return self._q[0] if self._q else None

    def pop(self):
        """Remove the head: call only after its PUBACK."""
        self._done(self._seqs.pop(0))
        return self._q.pop(0)

    def _drop_head(self):
        self.dropped += 1
        self._q.pop(0)
        self._done(self._seqs.pop(0))

    def _done(self, seq):
        if seq and self.journal is not None:
            try:
                self.journal.mark_done(seq)
            except OSError as e:  # after a restart it would be sent again: a duplicate, not a loss
                self._failed("cannot mark message %d done (%s): it may be sent again after a restart" % (seq, log.err(e)))

    def _failed(self, why):
        self.journal_errors += 1
        log.error(_TAG, "journal: %s", why)

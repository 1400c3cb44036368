"""The module's file system (Air780 family; the Air724 personality has none of these
commands: ERROR): AT+FSCREATE, AT+FSDEL, AT+FSWRITE (raw bytes at a `>` prompt),
AT+FSREAD, AT+FSFLSIZE. The files live in the core's Net (flash: they survive restarts and
power cycles); AT+SSLCFG names them as CA certificates (sslcfg.py).

Where the manual is silent (inferred): AT+FSCREATE of a file that exists, AT+FSDEL or
AT+FSWRITE of one that does not: ERROR; AT+FSWRITE mode 0 writes from the start without
cutting what lies beyond (hence the driver's AT+FSDEL first); the data is not echoed; a
write that does not arrive within <inputtime> seconds answers `TimeOut` and keeps nothing.
"""
from tools.sim.core import Part
from tools.sim.dialect import ERROR, OK, ParamError, integer, lines, set_params

FS_SIZE = 256 * 1024          # the Air780E AT firmware's file system (256 KB)


class Files(Part):
    COMMANDS = {"+FSCREATE": "create", "+FSDEL": "delete", "+FSWRITE": "write", "+FSREAD": "read",
                "+FSFLSIZE": "size"}

    def commands(self):
        return super().commands() if self.core.personality.files else {}

    @property
    def _files(self):
        return self.core.net.files

    def _name(self, p):
        name = p[0]
        if not name or len(name) > self.core.personality.fs_name_max:
            raise ParamError("bad file name")
        return name

    def create(self, kind, args):
        name = self._name(set_params(kind, args, 1)[0])
        if name in self._files:
            return ERROR
        self._files[name] = bytearray()
        return OK

    def delete(self, kind, args):
        name = self._name(set_params(kind, args, 1)[0])
        if self._files.pop(name, None) is None:
            return ERROR
        return OK

    def size(self, kind, args):
        name = self._name(set_params(kind, args, 1)[0])
        if name not in self._files:
            return ERROR
        return lines("+FSFLSIZE: %d" % len(self._files[name])) + OK

    def read(self, kind, args):
        p = set_params(kind, args, 4)  # name, mode, size, position
        name = self._name(p[0])
        mode, n, pos = integer(p[1], 0, 1), integer(p[2], 1, 10240), integer(p[3])
        data = self._files.get(name)
        if data is None:
            return ERROR
        start = pos if mode == 1 else 0
        if mode == 1 and start >= len(data):
            return ERROR
        return lines(bytes(data[start:start + n])) + OK

    def write(self, kind, args):
        p = set_params(kind, args, 4)  # name, mode, size, input time (s)
        personality = self.core.personality
        name = self._name(p[0])
        mode, n = integer(p[1], 0, 1), integer(p[2], 1, personality.fs_write_max)
        seconds = integer(p[3], 1)
        old = self._files.get(name)
        if old is None:
            return ERROR
        used = sum(len(v) for v in self._files.values())
        if used - len(old) + max(len(old), n if mode == 0 else len(old) + n) > FS_SIZE:
            return ERROR
        core = self.core
        if not core.reply_pause():
            return None
        core.emit(personality.fs_prompt)
        data = core.read_data(n, float(seconds))
        if data is None:
            return None if core.aborted else lines("TimeOut")
        if mode == 0:
            old[:n] = data
        else:
            old += data
        return OK

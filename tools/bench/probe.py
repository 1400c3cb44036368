"""The heap probe both memory profiles run on MicroPython (the unix port's in memory.py,
the emulated Pico's in board.py): the live heap at the start, after each import of the
app's modules in its order (with the qstr pool's size after it) and after loading the
config (printed as `MEM ...` / `QSTR ...` lines, which memory.profile() and board.parse()
read); what one QoS 1 uplink allocates. memory.py imports it; board.py sends its text
ahead of the board half.
MicroPython only (gc.mem_alloc, micropython.qstr_info)."""
import gc

import micropython


def out(*a):
    print("MEM " + " ".join(str(x) for x in a))


def heap():
    """The live heap: gc.mem_alloc() right after a gc.collect()."""
    gc.collect()
    return gc.mem_alloc()


def qstr(tag):
    print("QSTR " + tag)
    micropython.qstr_info()


def imports_and_config(mods):
    """Import `mods` one by one, then load the config as main() does (the checker dropped
    afterwards) and build the Topics once; each step's heap cost printed. (cfg, live heap)."""
    prev = heap()
    out("base", prev)
    qstr("base")
    for m in mods:
        __import__(m)
        now = heap()
        out("import", m, now - prev)
        qstr(m)
        prev = now
    out("imports_total", prev)
    from firmware import aliyun, app

    cfg = app.load_config()
    now = heap()
    out("config", now - prev)
    t = aliyun.Topics(cfg["product_key"], cfg["device_name"])
    out("topics_object", heap() - now)
    del t
    return cfg, heap()


def uplink(a):
    """One QoS 1 uplink of App `a` as it sends one (telemetry(), Link.publish(), the link's
    steps until the PUBACK), the GC off: (bytes allocated by each of the three, the live
    heap before it)."""
    link = a.link
    live = heap()
    gc.disable()
    b0 = gc.mem_alloc()
    msg = a.telemetry()
    b1 = gc.mem_alloc()
    link.publish(a.topics.update, msg, 1)
    b2 = gc.mem_alloc()
    for _ in range(2000):
        if not len(link.outbox):
            break
        link.step()
    b3 = gc.mem_alloc()
    gc.enable()
    return b1 - b0, b2 - b1, b3 - b2, live

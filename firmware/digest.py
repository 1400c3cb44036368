# Pure-Python MD5 (RFC 1321) and SHA-1 (FIPS 180) for boards whose hashlib lacks them: a
# plain Raspberry Pi Pico build has no hashlib.md5 (MicroPython ties md5 to TLS support).
# firmware/sign.py imports this module only on such a board, so it costs no RAM elsewhere.
from struct import pack, pack_into, unpack_from

from firmware.port import const

_M32 = const(0xFFFFFFFF)

# --- MD5 (RFC 1321) tables -----------------------------------------------------------
# K[i] = floor(abs(sin(i + 1)) * 2**32), written out so no float maths runs on the board.
_MD5_K = (
    0xD76AA478, 0xE8C7B756, 0x242070DB, 0xC1BDCEEE, 0xF57C0FAF, 0x4787C62A, 0xA8304613, 0xFD469501,
    0x698098D8, 0x8B44F7AF, 0xFFFF5BB1, 0x895CD7BE, 0x6B901122, 0xFD987193, 0xA679438E, 0x49B40821,
    0xF61E2562, 0xC040B340, 0x265E5A51, 0xE9B6C7AA, 0xD62F105D, 0x02441453, 0xD8A1E681, 0xE7D3FBC8,
    0x21E1CDE6, 0xC33707D6, 0xF4D50D87, 0x455A14ED, 0xA9E3E905, 0xFCEFA3F8, 0x676F02D9, 0x8D2A4C8A,
    0xFFFA3942, 0x8771F681, 0x6D9D6122, 0xFDE5380C, 0xA4BEEA44, 0x4BDECFA9, 0xF6BB4B60, 0xBEBFBC70,
    0x289B7EC6, 0xEAA127FA, 0xD4EF3085, 0x04881D05, 0xD9D4D039, 0xE6DB99E5, 0x1FA27CF8, 0xC4AC5665,
    0xF4292244, 0x432AFF97, 0xAB9423A7, 0xFC93A039, 0x655B59C3, 0x8F0CCC92, 0xFFEFF47D, 0x85845DD1,
    0x6FA87E4F, 0xFE2CE6E0, 0xA3014314, 0x4E0811A1, 0xF7537E82, 0xBD3AF235, 0x2AD7D2BB, 0xEB86D391,
)
# Message word used by each of the 64 steps.
_MD5_G = bytes(
    [i for i in range(16)]
    + [(5 * i + 1) & 15 for i in range(16)]
    + [(3 * i + 5) & 15 for i in range(16)]
    + [(7 * i) & 15 for i in range(16)]
)
# Left-rotation amounts, per round (each round repeats its 4 amounts 4 times).
_MD5_S = bytes((7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4)

# Scratch for SHA-1's message schedule: allocated once, reused by every block.
_W = [0] * 80


def _add(state, words):
    """A block's result added into the running state, word by word, mod 2**32."""
    for j in range(len(state)):
        state[j] = (state[j] + words[j]) & _M32


def _md5_blocks(buf, state):
    # `buf` is whole 64-byte blocks (already padded); `state` is a 4-item list, updated.
    K = _MD5_K
    G = _MD5_G
    S = _MD5_S
    M = _M32
    for off in range(0, len(buf), 64):
        X = unpack_from("<16I", buf, off)
        a, b, c, d = state
        for i in range(64):  # four rounds of 16 steps, each with its own mixing function
            if i < 16:
                f = d ^ (b & (c ^ d))
            elif i < 32:
                f = c ^ (d & (b ^ c))
            elif i < 48:
                f = b ^ c ^ d
            else:
                f = c ^ (b | (d ^ M))
            t = (a + f + K[i] + X[G[i]]) & M
            s = S[i]
            a = d
            d = c
            c = b
            b = (b + ((t << s) & M | t >> (32 - s))) & M
        _add(state, (a, b, c, d))


def _sha1_blocks(buf, state):
    # `buf` is whole 64-byte blocks (already padded); `state` is a 5-item list, updated.
    W = _W
    M = _M32
    for off in range(0, len(buf), 64):
        W[0:16] = unpack_from(">16I", buf, off)
        for i in range(16, 80):
            x = W[i - 3] ^ W[i - 8] ^ W[i - 14] ^ W[i - 16]
            W[i] = (x << 1) & M | x >> 31
        a, b, c, d, e = state
        for i in range(80):  # four rounds of 20 steps, each with its constant
            if i < 20:
                f = (d ^ (b & (c ^ d))) + 0x5A827999
            elif 40 <= i < 60:
                f = ((b & c) | (d & (b | c))) + 0x8F1BBCDC
            else:  # rounds 2 and 4 mix by parity
                f = (b ^ c ^ d) + (0x6ED9EBA1 if i < 40 else 0xCA62C1D6)
            t = ((a << 5) & M | a >> 27) + f + e + W[i]
            e = d
            d = c
            c = (b << 30) & M | b >> 2
            b = a
            a = t & M
        _add(state, (a, b, c, d, e))


def digest(name, head, data):
    """Pure-Python digest of head + data (md5 or sha1): the two are copied once, into the
    padded buffer, so HMAC never concatenates its pad and message separately."""
    lh = len(head)
    n = lh + len(data)
    size = (n + 72) & ~63  # room for the 0x80 byte and the 8-byte bit length
    buf = bytearray(size)
    buf[0:lh] = head
    buf[lh:n] = data
    buf[n] = 0x80
    bits = n << 3
    if name == "md5":
        pack_into("<II", buf, size - 8, bits & _M32, bits >> 32)
        state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
        _md5_blocks(buf, state)
        return pack("<4I", *state)
    pack_into(">II", buf, size - 8, bits >> 32, bits & _M32)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    _sha1_blocks(buf, state)
    return pack(">5I", *state)

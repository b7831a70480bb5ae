#!/usr/bin/env python3
"""A DoT client for the end-to-end tests (Python's ssl, i.e. OpenSSL, with a
client certificate): pipelining, malformed messages, and a held connection.

  dot_client.py HOST PORT BUNDLE SERVER_NAME pipeline N NAME [RCODE]
  dot_client.py HOST PORT BUNDLE SERVER_NAME garbage
  dot_client.py HOST PORT BUNDLE SERVER_NAME hold SECONDS
  dot_client.py HOST PORT BUNDLE SERVER_NAME count N NAME
  dot_client.py HOST PORT BUNDLE SERVER_NAME noread SECONDS NAME

ZT_TLS12=1 in the environment: at most TLS 1.2.
"""
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time


def connect(host, port, bundle, server_name, rcvbuf=0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if os.environ.get("ZT_TLS12"):  # a TLS 1.2 client (the server must allow it)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(os.path.join(bundle, "ca.crt"))
    ctx.load_cert_chain(os.path.join(bundle, "cert.pem"), os.path.join(bundle, "key.pem"))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
    raw.settimeout(10)
    raw.connect((host, port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def query(qid, name, qtype=1, padding=False):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if padding else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    if padding:  # an OPT record with an empty Padding option: answers come padded to 468 (RFC 8467)
        q += b"\0" + struct.pack(">HHIHHH", 41, 1232, 0, 4, 12, 0)
    return q


def frame(msg):
    return struct.pack(">H", len(msg)) + msg


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_answer(s):
    (length,) = struct.unpack(">H", read_exact(s, 2))
    return read_exact(s, length)


def pipeline(s, n, name, want_rcode=0):
    ids = random.sample(range(65536), n)
    s.sendall(b"".join(frame(query(i, name)) for i in ids))
    seen = set()
    for _ in range(n):
        ans = read_answer(s)
        qid, flags = struct.unpack(">HH", ans[:4])
        rcode = flags & 0xF
        if qid not in ids or qid in seen or not flags & 0x8000 or rcode != want_rcode:
            print("bad answer: id %d flags %04x" % (qid, flags))
            return 1
        seen.add(qid)
    print("answered %d of %d, ids matched" % (len(seen), n))
    return 0 if len(seen) == n else 1


def garbage(host, port, bundle, server_name):
    """Each malformed message on its own connection: FORMERR or a close, and
    the server must still answer a good query afterwards."""
    loop = bytes([0xC0, 12])  # a pointer to itself, at offset 12
    cases = {
        "short header": b"\x12\x34\x01",
        "counts beyond the message": struct.pack(">HHHHHH", 1, 0x0100, 1, 5, 5, 5),
        "pointer loop in the question": struct.pack(">HHHHHH", 2, 0x0100, 1, 0, 0, 0) + loop + b"\0\1\0\1",
        "label over 63": struct.pack(">HHHHHH", 3, 0x0100, 1, 0, 0, 0) + b"\x50" + b"a" * 80 + b"\0\0\1\0\1",
        "name over 255": struct.pack(">HHHHHH", 4, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1",
        "truncated question": struct.pack(">HHHHHH", 5, 0x0100, 1, 0, 0, 0) + b"\x03abc",
        "two questions": query(6, "a.test")[:4] + b"\0\2" + query(6, "a.test")[6:] + query(6, "b.test")[12:],
        "a response, not a query": struct.pack(">HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\0\0\1\0\1",
        "random bytes": bytes(random.getrandbits(8) for _ in range(300)),
        "forward pointer": struct.pack(">HHHHHH", 8, 0x0100, 1, 0, 0, 0) + bytes([0xC0, 40]) + b"\0\1\0\1" + b"\0" * 40,
    }
    failures = 0
    for what, msg in cases.items():
        s = connect(host, port, bundle, server_name)
        try:
            s.sendall(frame(msg))
            ans = read_answer(s)
            rcode = ans[3] & 0xF if len(ans) >= 4 else -1
            print("%s: answered rcode %d" % (what, rcode))
            if rcode not in (1, 4):  # FORMERR, NOTIMP
                failures += 1
        except (EOFError, ConnectionError, ssl.SSLError) as e:
            print("%s: closed (%s)" % (what, e))
        s.close()
    s = connect(host, port, bundle, server_name)
    s.sendall(frame(query(4242, "www.public.test")))
    ans = read_answer(s)
    ok = struct.unpack(">H", ans[:2])[0] == 4242
    print("still serving after the malformed messages: %s" % ok)
    return 0 if ok and failures == 0 else 1


def hold(s, seconds):
    """Holds an authenticated connection; prints when the server closes it."""
    s.sendall(frame(query(1, "www.public.test")))
    read_answer(s)
    print("connected", flush=True)
    start = time.time()
    s.settimeout(seconds)
    try:
        while s.recv(1):
            pass
        print("closed by the server after %.2fs" % (time.time() - start), flush=True)
    except socket.timeout:
        print("still open after %ss" % seconds, flush=True)
    except (ssl.SSLError, ConnectionError) as e:
        print("closed by the server after %.2fs (%s)" % (time.time() - start, e), flush=True)
    return 0


def count(s, n, name):
    """Sends N pipelined queries; prints how many were answered before the server closed."""
    s.sendall(b"".join(frame(query(i, name)) for i in range(n)))
    got = 0
    try:
        while got < n:
            read_answer(s)
            got += 1
    except (EOFError, ssl.SSLError, ConnectionError):
        print("answered %d, then closed by the server" % got)
        return 0
    print("answered all %d" % got)
    return 0


def noread(s, seconds, name):
    """Sends padded queries and never reads an answer; prints whether and when the server closes."""
    def flood():
        try:
            for i in range(200000):
                s.sendall(frame(query(i & 0xFFFF, name, padding=True)))
        except (OSError, ssl.SSLError):
            pass
    threading.Thread(target=flood, daemon=True).start()
    start = time.time()
    while time.time() - start < seconds:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        if info[0] != 1:  # tcpi_state: no longer ESTABLISHED
            print("closed by the server after %.2fs" % (time.time() - start), flush=True)
            return 0
        time.sleep(0.05)
    print("still open after %ss" % seconds, flush=True)
    return 0


def main():
    host, port, bundle, server_name, cmd = sys.argv[1:6]
    port = int(port)
    if cmd == "garbage":
        return garbage(host, port, bundle, server_name)
    s = connect(host, port, bundle, server_name, rcvbuf=4096 if cmd == "noread" else 0)
    if cmd == "pipeline":
        return pipeline(s, int(sys.argv[6]), sys.argv[7], int(sys.argv[8]) if len(sys.argv) > 8 else 0)
    if cmd == "hold":
        return hold(s, float(sys.argv[6]))
    if cmd == "count":
        return count(s, int(sys.argv[6]), sys.argv[7])
    if cmd == "noread":
        return noread(s, float(sys.argv[6]), sys.argv[7])
    print("unknown command " + cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main())

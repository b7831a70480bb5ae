#!/usr/bin/env python3
"""A client of the TLS proxy for the end-to-end tests (Python's ssl, i.e.
OpenSSL, with a client certificate and SNI = the private name).

  tunnel_client.py PORT BUNDLE NAME bulk MIB      send MIB MiB to an echo service and check what comes back
  tunnel_client.py PORT BUNDLE NAME halfclose     send, close our side (close_notify + FIN), read the answer
  tunnel_client.py PORT BUNDLE NAME halfclose-fin the same with a bare FIN (no close_notify)
  tunnel_client.py PORT BUNDLE NAME hold SECONDS  hold a tunnel open; say when the proxy closes it,
                                                  or after SECONDS what one more round trip answers
  tunnel_client.py PORT BUNDLE NAME ping          one round trip
  tunnel_client.py PORT BUNDLE NAME silent SECONDS  say nothing after the handshake; say when the proxy closes
  tunnel_client.py PORT BUNDLE NAME bighello      one round trip after a ClientHello of over 1 KiB sent in pieces
"""
import hashlib
import os
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"


def context(bundle):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(bundle, "ca.crt"))
    ctx.load_cert_chain(os.path.join(bundle, "cert.pem"), os.path.join(bundle, "key.pem"))
    return ctx


def connect(port, bundle, name):
    raw = socket.create_connection((HOST, port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context(bundle).wrap_socket(raw, server_hostname=name)


def bulk(port, bundle, name, mib):
    """Sends MIB MiB and reads the echo at the same time, in one thread
    (Python's SSLSocket is not safe to read and write from two threads):
    non-blocking socket, TLS in memory BIOs, select()."""
    import selectors
    raw = socket.create_connection((HOST, port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context(bundle).wrap_bio(inc, out, server_hostname=name)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            data = raw.recv(65536)
            if not data:
                print("closed during the handshake")
                return 1
            inc.write(data)
    raw.sendall(out.read())
    raw.setblocking(False)
    total = mib << 20
    block = os.urandom(1 << 16)
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
    plain_left, got, pending = total, 0, b""
    sel = selectors.DefaultSelector()
    sel.register(raw, selectors.EVENT_READ | selectors.EVENT_WRITE)
    start = time.time()
    deadline = start + 120
    while got < total and time.time() < deadline:
        # Encrypt more while little ciphertext waits to go out.
        while plain_left and len(pending) + out.pending < (1 << 20):
            chunk = block[: min(plain_left, len(block))]
            obj.write(chunk)
            sent_hash.update(chunk)
            plain_left -= len(chunk)
        pending += out.read()
        for _, events in sel.select(timeout=1):
            if events & selectors.EVENT_WRITE and pending:
                try:
                    n = raw.send(pending)
                    pending = pending[n:]
                except BlockingIOError:
                    pass
            if events & selectors.EVENT_READ:
                try:
                    data = raw.recv(1 << 18)
                except BlockingIOError:
                    data = None
                if data == b"":
                    deadline = 0
                    break
                if data:
                    inc.write(data)
                    while True:
                        try:
                            plain = obj.read(1 << 18)
                        except ssl.SSLWantReadError:
                            break
                        if not plain:
                            break
                        got_hash.update(plain)
                        got += len(plain)
        if not pending and not plain_left:
            sel.modify(raw, selectors.EVENT_READ)
    secs = time.time() - start
    ok = got == total and sent_hash.digest() == got_hash.digest()
    print("%s: %d MiB each way in %.1fs, %s" % ("intact" if ok else "CORRUPT", mib, secs,
                                               "checksums match" if ok else "got %d bytes" % got))
    return 0 if ok else 1


def halfclose(port, bundle, name, notify=True):
    """close_notify (unless not `notify`) + FIN after sending; the service's answer must still arrive."""
    raw = socket.create_connection((HOST, port), timeout=30)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context(bundle).wrap_bio(inc, out, server_hostname=name)

    def flush():
        data = out.read()
        if data:
            raw.sendall(data)

    def pump():
        data = raw.recv(65536)
        if not data:
            inc.write_eof()
            return False
        inc.write(data)
        return True

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            pump()
    flush()
    payload = b"x" * 100000
    obj.write(payload)
    flush()
    if notify:
        try:
            obj.unwrap()  # sends close_notify; the answer is still to come
        except ssl.SSLWantReadError:
            pass
        flush()
    raw.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        try:
            chunk = obj.read(65536)
            if not chunk:
                break
            answer += chunk
        except ssl.SSLWantReadError:
            if not pump():
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    print("answer after half-close: %r" % answer.strip())
    return 0 if answer.strip() == str(len(payload)).encode() else 1


def bighello(port, bundle, name):
    """A ClientHello of over 1 KiB (a long ALPN list; a post-quantum key share
    makes one as large) sent in 300-byte pieces 30 ms apart, then one round
    trip through the tunnel: the SNI must survive the split."""
    ctx = context(bundle)
    ctx.set_alpn_protocols(["p%d-%s" % (k, "x" * 200) for k in range(6)])
    raw = socket.create_connection((HOST, port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    hello, pieces = 0, 0

    def pump():
        data = raw.recv(65536)
        if not data:
            raise EOFError("closed by the proxy")
        inc.write(data)

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = out.read()
                if not hello:
                    hello = len(data)
                    for k in range(0, len(data), 300):
                        raw.sendall(data[k:k + 300])
                        pieces += 1
                        time.sleep(0.03)
                else:
                    raw.sendall(data)
                pump()
        raw.sendall(out.read())
        obj.write(b"ping\n")
        raw.sendall(out.read())
        while True:
            try:
                answer = obj.read(100).decode().strip()
                break
            except ssl.SSLWantReadError:
                pump()
    except (EOFError, ssl.SSLError, ConnectionError) as e:
        print("failed after a ClientHello of %d bytes in %d pieces: %s" % (hello, pieces, e))
        return 1
    print("round trip: %s (ClientHello of %d bytes in %d pieces)" % (answer, hello, pieces))
    return 0 if answer == "ping" and hello > 1024 else 1


def hold(s, seconds):
    s.sendall(b"ping\n")
    s.recv(100)
    print("connected", flush=True)
    start = time.time()
    s.settimeout(seconds)
    try:
        while s.recv(100):
            pass
        print("closed by the proxy after %.2fs" % (time.time() - start), flush=True)
    except socket.timeout:
        s.settimeout(5)
        s.sendall(b"again\n")
        try:
            answer = s.recv(100).decode().strip()
        except (OSError, ssl.SSLError) as e:
            answer = "(%s)" % e
        print("still open after %ss; one more round trip: %s" % (seconds, answer), flush=True)
    except (ssl.SSLError, ConnectionError) as e:
        print("closed by the proxy after %.2fs (%s)" % (time.time() - start, e), flush=True)
    return 0


def main():
    port, bundle, name, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    if cmd == "halfclose":
        return halfclose(port, bundle, name)
    if cmd == "halfclose-fin":
        return halfclose(port, bundle, name, notify=False)
    if cmd == "bulk":
        return bulk(port, bundle, name, int(sys.argv[5]))
    if cmd == "bighello":
        return bighello(port, bundle, name)
    s = connect(port, bundle, name)
    if cmd == "hold":
        return hold(s, float(sys.argv[5]))
    if cmd == "silent":
        start = time.time()
        s.settimeout(float(sys.argv[5]))
        try:
            while s.recv(100):
                pass
        except socket.timeout:
            print("still open after %ss" % sys.argv[5])
            return 1
        except (ssl.SSLError, ConnectionError):
            pass
        print("closed by the proxy after %.2fs" % (time.time() - start))
        return 0
    if cmd == "ping":
        s.sendall(b"ping\n")
        answer = s.recv(100).decode().strip()
        print(answer)
        return 0 if answer else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())

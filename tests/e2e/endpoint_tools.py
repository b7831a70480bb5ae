#!/usr/bin/env python3
"""Plain-TCP helpers of the endpoint's end-to-end test: the applications in it know nothing of TLS, exactly like
psql or curl, and reach a private name through the endpoint's tunnel.

  endpoint_tools.py echo BIND PORT           an echo service (reads and writes concurrently; FIN after the client's)
  endpoint_tools.py bulk HOST PORT MIB       send MIB MiB to an echo service while reading the echo; check sha256
  endpoint_tools.py halfclose HOST PORT N    send N bytes, shut our side (FIN), print what comes back
  endpoint_tools.py rtt HOST PORT N          N round trips of 64 bytes on one connection: median and p99 in us
  endpoint_tools.py resolver BIND PORT LOG   a plain DNS server on UDP that answers every A question with
                                             198.18.1.77 and logs "source-port id" per query; for a name starting
                                             "spoof", two forged answers go first (198.18.6.66: one from another
                                             port, one with another id)
"""
import asyncio
import hashlib
import os
import selectors
import socket
import statistics
import sys
import time


async def echo_handle(reader, writer):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def echo(bind, port):
    server = await asyncio.start_server(echo_handle, bind, port)
    async with server:
        await server.serve_forever()


def connect(host, port):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def bulk(host, port, mib):
    s = connect(host, port)
    s.setblocking(False)
    total = mib << 20
    block = os.urandom(1 << 16)
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
    sent = got = 0
    pending = b""
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    start = time.time()
    deadline = start + 120
    shut = False
    while got < total and time.time() < deadline:
        if not pending and sent < total:
            pending = block[: min(len(block), total - sent)]
        for _, ev in sel.select(timeout=1):
            if ev & selectors.EVENT_WRITE and pending:
                try:
                    n = s.send(pending)
                    sent_hash.update(pending[:n])
                    sent += n
                    pending = pending[n:]
                except BlockingIOError:
                    pass
            if ev & selectors.EVENT_READ:
                try:
                    data = s.recv(1 << 18)
                except BlockingIOError:
                    continue
                if not data:
                    print(f"closed after {got} of {total} bytes")
                    return 1
                got_hash.update(data)
                got += len(data)
        if sent >= total and not shut:
            s.shutdown(socket.SHUT_WR)
            shut = True
            sel.modify(s, selectors.EVENT_READ)
    secs = time.time() - start
    if got == total and sent_hash.digest() == got_hash.digest():
        print(f"intact: {mib} MiB each way in {secs:.2f} s ({mib / secs:.0f} MiB/s each way)")
        return 0
    print(f"broken: sent {sent}, got {got}")
    return 1


def halfclose(host, port, n):
    s = connect(host, port)
    s.sendall(b"x" * n)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        data = s.recv(65536)
        if not data:
            break
        answer += data
    print(f"answer after half-close: {answer.strip().decode()}")
    return 0


def rtt(host, port, n):
    s = connect(host, port)
    msg = b"p" * 64
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            data = s.recv(len(msg) - len(got))
            if not data:
                print("closed")
                return 1
            got += data
        times.append((time.perf_counter_ns() - t) / 1000)
    times.sort()
    print(f"rtt over {n}: median {statistics.median(times):.0f} us, p99 {times[int(n * 0.99) - 1]:.0f} us")
    return 0


def dns_answer(query, qid, addr):
    """The answer to a query (its header and question, one A record), with message id qid."""
    end = 12
    while query[end] != 0:
        end += 1 + query[end]
    question = query[12:end + 5]
    header = qid.to_bytes(2, "big") + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(addr)
    return header + question + record


def resolver(bind, port, log):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, port))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind((bind, 0))
    with open(log, "a", buffering=1) as out:
        while True:
            query, peer = s.recvfrom(4096)
            if len(query) < 17:
                continue
            qid = int.from_bytes(query[:2], "big")
            out.write(f"{peer[1]} {qid}\n")
            if query[13:18].lower() == b"spoof":
                other.sendto(dns_answer(query, qid, "198.18.6.66"), peer)
                s.sendto(dns_answer(query, qid ^ 0x5a5a, "198.18.6.66"), peer)
            s.sendto(dns_answer(query, qid, "198.18.1.77"), peer)


def main():
    cmd = sys.argv[1]
    if cmd == "echo":
        asyncio.run(echo(sys.argv[2], int(sys.argv[3])))
        return 0
    if cmd == "resolver":
        resolver(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    host, port, arg = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    return {"bulk": bulk, "halfclose": halfclose, "rtt": rtt}[cmd](host, port, arg)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""An echo service for the end-to-end tests: echoes every byte (reading and
writing concurrently, so it never deadlocks under bulk load, which socat's
PIPE does), and closes its side after the client's EOF.

  echo_server.py PORT [GREETING]
"""
import asyncio
import sys


async def handle(reader, writer, greeting):
    if greeting:
        writer.write(greeting.encode() + b"\n")
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


async def main():
    port = int(sys.argv[1])
    greeting = sys.argv[2] if len(sys.argv) > 2 else ""
    server = await asyncio.start_server(lambda r, w: handle(r, w, greeting), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""The asyncio baseline for bench/OrleansProtocol.Bench: the model this library ports, as its docs write it.

An asyncio.Protocol echo (write back what data_received got), TCP_NODELAY as the other servers, on 127.0.0.1 and the
port given (0: any free one); prints 'asyncio listening on HOST:PORT' once it accepts.
"""
import asyncio
import socket
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port, backlog=512)
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"asyncio listening on {host}:{bound}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

using System.Net;
using System.Net.Sockets;

namespace OrleansProtocol.Tests.Infrastructure;

public static class TestPorts
{
    /// <summary>A loopback port free right now, for servers that need a fixed port (a silo's own ports).</summary>
    public static int Free()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

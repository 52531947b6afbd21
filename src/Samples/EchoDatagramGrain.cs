using System.Net;

namespace OrleansProtocol.Samples;

/// <summary>
/// The echo service over UDP (RFC 862 serves both TCP and UDP on one port): each datagram goes back to its sender
/// unchanged. One grain per peer. Served on 127.0.0.1:7000/udp by the gateway host, beside the TCP echo on 7000.
/// </summary>
public sealed class EchoDatagramGrain : DatagramProtocolGrain
{
    /// <inheritdoc />
    protected override Task DatagramReceived(ReadOnlyMemory<byte> data, IPEndPoint remote)
    {
        Transport.SendTo(data.Span, remote);
        return Task.CompletedTask;
    }
}

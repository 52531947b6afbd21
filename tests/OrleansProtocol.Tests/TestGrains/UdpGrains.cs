using System.Net;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>Counts the datagrams it got and answers each with "count:payload" to its sender.</summary>
public sealed class UdpCounterGrain(CallbackRecorder recorder) : DatagramProtocolGrain
{
    private int _count;

    protected override Task DatagramReceived(ReadOnlyMemory<byte> data, IPEndPoint remote)
    {
        _count++;
        Transport.SendTo(Encoding.UTF8.GetBytes($"{_count}:{Encoding.UTF8.GetString(data.Span)}"), remote);
        recorder.For(new ConnectionInfo("udp-" + Transport.Endpoint.EndpointName, Transport.Endpoint.EndpointName, null, null)).Touch();
        return Task.CompletedTask;
    }
}

/// <summary>Takes its time over every datagram, so its queue overflows under a burst.</summary>
public sealed class UdpSlowGrain(CallbackRecorder recorder) : DatagramProtocolGrain
{
    protected override async Task DatagramReceived(ReadOnlyMemory<byte> data, IPEndPoint remote)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(20));
        recorder.For(new ConnectionInfo("udp-slow", "udp-slow", null, null)).Add("datagram");
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>UDP endpoints (asyncio create_datagram_endpoint) served by datagram grains.</summary>
[Collection(GatewayCollection.Name)]
public sealed class DatagramTests(GatewayClusterFixture fixture)
{
    private static async Task<string> RequestAsync(UdpClient client, IPEndPoint server, string payload)
    {
        await client.SendAsync(Encoding.UTF8.GetBytes(payload), server);
        var reply = await client.ReceiveAsync().WaitAsync(TestTimeouts.Default);
        Assert.Equal(server, reply.RemoteEndPoint);
        return Encoding.UTF8.GetString(reply.Buffer);
    }

    [Fact]
    public async Task A_thousand_datagrams_from_ten_peers_are_each_answered_to_the_right_peer_by_its_own_grain()
    {
        var endpoint = fixture.Udp("udp-per-peer");
        var server = endpoint.LocalEndPoint;
        var peers = Enumerable.Range(0, 10).Select(_ => new UdpClient(new IPEndPoint(IPAddress.Loopback, 0))).ToList();
        try
        {
            await Task.WhenAll(peers.Select((peer, p) => Task.Run(async () =>
            {
                for (var i = 1; i <= 100; i++)
                {
                    // Each peer's grain counts only that peer's datagrams.
                    Assert.Equal($"{i}:peer {p} message {i}", await RequestAsync(peer, server, $"peer {p} message {i}"));
                }
            })));

            Assert.True(endpoint.PeerCount >= 10);
            Assert.Equal(0, endpoint.DroppedDatagrams);
            Assert.True(endpoint.ReceivedDatagrams >= 1000);
        }
        finally
        {
            peers.ForEach(p => p.Dispose());
        }
    }

    [Fact]
    public async Task In_per_endpoint_mode_one_grain_serves_every_peer()
    {
        var server = fixture.Udp("udp-shared").LocalEndPoint;
        using var a = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var b = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var counts = new List<int>();
        for (var i = 0; i < 5; i++)
        {
            counts.Add(int.Parse((await RequestAsync(a, server, "a")).Split(':')[0]));
            counts.Add(int.Parse((await RequestAsync(b, server, "b")).Split(':')[0]));
        }

        Assert.Equal(Enumerable.Range(counts[0], 10), counts);
    }

    [Fact]
    public async Task A_burst_beyond_the_queue_is_dropped_and_counted_without_blocking_the_socket()
    {
        var endpoint = fixture.Udp("udp-slow");
        var record = fixture.Recorder.For(new ConnectionInfo("udp-slow", "udp-slow", null, null));
        var receivedBefore = endpoint.ReceivedDatagrams;
        var droppedBefore = endpoint.DroppedDatagrams;
        using var client = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        for (var i = 0; i < 200; i++)
        {
            await client.SendAsync(new byte[16], endpoint.LocalEndPoint);
        }

        // Every datagram is read off the socket at once, whatever the grain's pace; most are dropped, and counted.
        await fixture.Recorder.WaitUntilAsync(() => endpoint.ReceivedDatagrams - receivedBefore == 200 && record.Count("datagram") > 0);
        var dropped = endpoint.DroppedDatagrams - droppedBefore;
        Assert.InRange(dropped, 100, 200 - 8);

        // The grain gets exactly what was not dropped.
        await fixture.Recorder.WaitUntilAsync(() => record.Count("datagram") == 200 - dropped);
    }
}

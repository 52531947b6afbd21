using Microsoft.Extensions.Time.Testing;
using System.Buffers;
using System.Net;
using System.Text;
using OrleansProtocol.Gateway;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>PROXY protocol v1 and v2: the parser on its own, fuzzed, and a listener behind a "load balancer".</summary>
[Collection(GatewayCollection.Name)]
public sealed class ProxyProtocolTests(GatewayClusterFixture fixture)
{
    private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    internal static byte[] V2Tcp4(string source, ushort sourcePort, string destination, ushort destinationPort)
    {
        var header = new List<byte>(V2Signature) { 0x21, 0x11, 0x00, 12 };
        header.AddRange(IPAddress.Parse(source).GetAddressBytes());
        header.AddRange(IPAddress.Parse(destination).GetAddressBytes());
        header.AddRange([(byte)(sourcePort >> 8), (byte)sourcePort, (byte)(destinationPort >> 8), (byte)destinationPort]);
        return [.. header];
    }

    private static ProxyParseStatus Parse(byte[] data, out ProxyHeader header, out long consumed) =>
        ProxyProtocolParser.TryParse(new ReadOnlySequence<byte>(data), out header, out consumed);

    [Fact]
    public void Version_1_and_2_headers_give_the_original_addresses_and_the_exact_header_length()
    {
        var v1 = "PROXY TCP4 203.0.113.7 10.0.0.1 51234 7000\r\nhello"u8.ToArray();
        Assert.Equal(ProxyParseStatus.Done, Parse(v1, out var header, out var consumed));
        Assert.Equal(IPEndPoint.Parse("203.0.113.7:51234"), header.Source);
        Assert.Equal(IPEndPoint.Parse("10.0.0.1:7000"), header.Destination);
        Assert.Equal(v1.Length - 5, consumed);

        var v6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"u8.ToArray();
        Assert.Equal(ProxyParseStatus.Done, Parse(v6, out header, out _));
        Assert.Equal(IPAddress.Parse("2001:db8::1"), header.Source!.Address);

        var v2 = V2Tcp4("198.51.100.9", 40000, "10.0.0.2", 7001);
        Assert.Equal(ProxyParseStatus.Done, Parse([.. v2, 1, 2, 3], out header, out consumed));
        Assert.Equal(IPEndPoint.Parse("198.51.100.9:40000"), header.Source);
        Assert.Equal(v2.Length, consumed);
    }

    [Fact]
    public void Truncated_headers_ask_for_more_and_garbage_or_oversized_ones_are_invalid()
    {
        var v2 = V2Tcp4("198.51.100.9", 40000, "10.0.0.2", 7001);
        for (var cut = 1; cut < v2.Length; cut++)
        {
            Assert.Equal(ProxyParseStatus.NeedMoreData, Parse(v2[..cut], out _, out _));
        }

        Assert.Equal(ProxyParseStatus.NeedMoreData, Parse("PROXY TCP4 1.2.3.4"u8.ToArray(), out _, out _));
        Assert.Equal(ProxyParseStatus.Invalid, Parse("GET / HTTP/1.1\r\n"u8.ToArray(), out _, out _));
        Assert.Equal(ProxyParseStatus.Invalid, Parse("PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\n"u8.ToArray(), out _, out _));
        Assert.Equal(ProxyParseStatus.Invalid, Parse(Encoding.ASCII.GetBytes("PROXY TCP4 " + new string('1', 120)), out _, out _));
        Assert.Equal(ProxyParseStatus.Invalid, Parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"u8.ToArray(), out _, out _));
    }

    private Task<ProtocolServer> CreateAsync(string trusted, TimeProvider? time = null) =>
        fixture.Gateway.CreateServerOnClockAsync<ScriptGrain>($"proxy-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.ProxyProtocol = true;
            o.ProxyTrustedNetworks = trusted;
        }, time);

    [Fact]
    public async Task Behind_a_trusted_proxy_peername_is_the_original_client_for_v1_and_v2()
    {
        await using var server = await CreateAsync("127.0.0.0/8");
        await using (var v1 = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            await v1.SendAsync("PROXY TCP4 203.0.113.7 10.0.0.1 51234 7000\r\nextra\n");
            Assert.Equal("203.0.113.7:51234 10.0.0.1:7000 default", await v1.ReadLineAsync());
        }

        await using (var v2 = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            await v2.SendAsync(V2Tcp4("198.51.100.9", 40000, "10.0.0.2", 7001).Concat("extra\n"u8.ToArray()).ToArray());
            Assert.Equal("198.51.100.9:40000 10.0.0.2:7001 default", await v2.ReadLineAsync());
        }
    }

    [Fact]
    public async Task Untrusted_senders_garbage_and_truncated_headers_are_dropped_before_any_grain()
    {
        using var durations = fixture.Collect<double>("orleansprotocol.connection.duration");
        string untrustedName;
        await using (var untrustedServer = await CreateAsync("10.0.0.0/8"))
        {
            untrustedName = untrustedServer.Name;
            // Dropped at accept, before the header is even read.
            await TestClient.AssertDroppedAsync(untrustedServer.EndPoints[0], "PROXY TCP4 203.0.113.7 10.0.0.1 51234 7000\r\nextra\n"u8.ToArray());
        }

        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync("127.0.0.0/8", time);
        await using (var garbage = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            await garbage.SendAsync("extra\n");
            await garbage.AssertDroppedAsync();
        }

        // A proxy that sends its header slowly, within the header timeout (10 s on the server's clock), is served.
        var header = V2Tcp4("198.51.100.9", 40000, "10.0.0.2", 7001);
        using var adopted = new SemaphoreSlim(0);
        server.ConnectionAccepted += _ => adopted.Release();
        await using (var slow = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            await slow.SendAsync(header[..10]);
            time.Advance(TimeSpan.FromSeconds(9), server);
            await slow.SendAsync(header[10..].Concat("extra\n"u8.ToArray()).ToArray());
            Assert.Equal("198.51.100.9:40000 10.0.0.2:7001 default", await slow.ReadLineAsync());
        }

        await using (var truncated = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            // Half a v2 header, then nothing: cut off once the header timeout has passed, while a healthy client is served.
            await truncated.SendAsync(header[..10]);

            // Its deadline counts from the gateway's accept: move the clock only once the gateway has it (after the slow one),
            // then a second at a time (a deadline armed while the clock moved is due a step later).
            Assert.True(await adopted.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(await adopted.WaitAsync(TimeSpan.FromSeconds(30)));
            var dropped = truncated.AssertDroppedAsync();
            time.Advance(TimeSpan.FromSeconds(11), server);
            await fixture.HealthyClientAsync(time.AdvanceUntilAsync(server, dropped));
        }

        // Each drop is measured as a ProtocolError close; no grain was called for any but the slow header's connection.
        await server.DisposeAsync();
        int ProtocolErrors(string listener) => durations.GetMeasurementSnapshot().Count(m =>
            (string?)m.Tags["orleansprotocol.listener"] == listener && (string?)m.Tags["orleansprotocol.close_reason"] == nameof(ConnectionCloseReason.ProtocolError));
        Assert.Equal(1, ProtocolErrors(untrustedName));
        Assert.Equal(2, ProtocolErrors(server.Name));
        Assert.DoesNotContain(fixture.Recorder.All, r => r.Connection.ListenerName == untrustedName);
        var served = Assert.Single(fixture.Recorder.All, r => r.Connection.ListenerName == server.Name);
        Assert.Equal("198.51.100.9:40000", served.Connection.RemoteEndPoint?.ToString());
    }
}

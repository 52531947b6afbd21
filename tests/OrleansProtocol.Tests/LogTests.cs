using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The gateway's logs for one connection: what is said at which level, with which event id and scope.</summary>
[Collection(GatewayCollection.Name)]
public sealed class LogTests(GatewayClusterFixture fixture)
{
    [Fact]
    public async Task A_connection_logs_its_accept_and_one_close_line_with_reason_duration_and_bytes_at_Debug_and_nothing_per_read_above_Trace()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        var id = record.Connection.ConnectionId;
        const int rounds = 50;
        for (var i = 0; i < rounds; i++)
        {
            await client.SendAsync($"echo {i:D3}\n");
            Assert.Equal($"{i:D3}", await client.ReadLineAsync());
        }

        await client.SendAsync("close\n");
        Assert.Equal("bye", await client.ReadLineAsync());
        Assert.Empty(await client.ReadToEndAsync());
        await client.DisposeAsync();
        var closed = await fixture.Logs.WaitForAsync(m => m.Contains($"Connection {id} closed"));

        // The close line: reason, duration, and byte counts each way (50 × "echo nnn\n" + "close\n" in, 50 × "nnn\n" + "bye\n" out).
        Assert.Contains("LocalClose", closed);
        Assert.Contains($"{rounds * "echo 000\n".Length + "close\n".Length} bytes received, {rounds * "000\n".Length + "bye\n".Length} bytes sent", closed);

        var mine = fixture.Logs.Entries.Where(e => e.Message.Contains(id)).ToList();

        // Above Trace: the accept and the close, whatever the traffic. Per read: Trace only.
        Assert.Equal([10, 11], mine.Where(e => e.Level > LogLevel.Trace).Select(e => e.EventId.Id).Order());
        Assert.All(mine.Where(e => e.Level > LogLevel.Trace), e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.InRange(mine.Count(e => e.EventId.Name == "DataDelivered"), 1, rounds + 1);
        Assert.All(mine.Where(e => e.EventId.Name == "DataDelivered"), e => Assert.Equal(LogLevel.Trace, e.Level));

        // Every line about the connection carries its id in a log scope, so other lines logged inside it do too.
        Assert.All(mine, e => Assert.Contains($"ConnectionId:{id}", e.Scopes));
    }

    [Fact]
    public async Task Two_thousand_junk_connections_of_each_kind_log_three_lines_per_kind_first_and_every_thousandth()
    {
        const int junk = 2000;
        var servers = new (string Kind, ProtocolServer Server, byte[] Junk)[]
        {
            ("no PROXY header", await fixture.Gateway.CreateServerAsync<Samples.EchoGrain>($"junk-proxy-{Guid.NewGuid():N}", o =>
            {
                o.Port = 0;
                o.ProxyProtocol = true;
                o.ProxyTrustedNetworks = "127.0.0.0/8";
            }), "GET / HTTP/1.1\r\n\r\n"u8.ToArray()),
            ("garbage TLS ClientHello", await fixture.Gateway.CreateServerAsync<Samples.EchoGrain>($"junk-tls-{Guid.NewGuid():N}", o =>
            {
                o.Port = 0;
                o.Tls.CertificatePath = fixture.CertificatePath;
            }), "junk\r\n"u8.ToArray()),
            ("4 GiB prefix, framed by the grain", await fixture.Gateway.CreateServerAsync<Samples.StringReceiverGrain>($"junk-strings-{Guid.NewGuid():N}", o => o.Port = 0),
                [0xFF, 0xFF, 0xFF, 0xFF]),
            ("4 GiB prefix, framed by the gateway", await fixture.Gateway.CreateServerAsync<Samples.FramedStringReceiverGrain>($"junk-framed-{Guid.NewGuid():N}", o =>
            {
                o.Port = 0;
                o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, BigEndian = false, MaxFrameSize = 99_999 };
            }), [0xFF, 0xFF, 0xFF, 0xFF]),
        };

        try
        {
            // Four clients per kind at a time, every kind at once.
            await Task.WhenAll(servers.SelectMany(s => Enumerable.Range(0, 4).Select(worker => Task.Run(async () =>
            {
                for (var i = worker; i < junk; i += 4)
                {
                    await TestClient.AssertDroppedAsync(s.Server.EndPoints[0], s.Junk);
                }
            }))));

            foreach (var (kind, server, _) in servers)
            {
                var lines = fixture.Logs.Entries.Where(e => e.Level >= LogLevel.Information && e.Message.Contains($"{server.Name}/")).ToList();
                Assert.True(lines.Count == 3, $"{kind}: {lines.Count} lines at Information or above:\n{string.Join("\n", lines.Take(5).Select(l => l.Message))}");
                Assert.Contains("(1 so far on this listener)", lines[0].Message);
                Assert.Contains(lines, l => l.Message.Contains("(1000 so far on this listener)"));
                Assert.Contains(lines, l => l.Message.Contains("(2000 so far on this listener)"));
            }
        }
        finally
        {
            foreach (var (_, server, _) in servers)
            {
                await server.DisposeAsync();
            }
        }
    }
}

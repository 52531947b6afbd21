using System.Text;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Defaults a generic protocol server can live with, and letting the protocol speak before a limit closes a
/// connection: a refusal message at accept (<c>CloseRequested</c> before a clock's close is in <see cref="FakeClockTests"/>).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class DefaultsTests(GatewayClusterFixture fixture)
{
    private const string Refusal = "-ERR max number of clients reached\r\n";

    [Fact]
    public async Task A_default_listener_serves_more_than_a_thousand_clients_from_one_address_and_lets_them_wait_in_silence()
    {
        var defaults = new ProtocolListenerOptions();
        Assert.Null(defaults.MaxConnectionsPerAddress);
        Assert.Equal(Timeout.InfiniteTimeSpan, defaults.IdleTimeout);
        Assert.Equal(Timeout.InfiniteTimeSpan, defaults.FirstDataTimeout);

        // A load test from one host (redis-benchmark -c 1000 plus its control connection), or clients behind one NAT.
        await using var server = await fixture.Gateway.CreateServerAsync<EchoGrain>($"defaults-{Guid.NewGuid():N}", o => o.Port = 0);
        var clients = new List<TestClient>();
        try
        {
            for (var i = 0; i < 1100; i++)
            {
                clients.Add(await TestClient.ConnectAsync(server.EndPoints[0]));
            }

            // All silent so far; every one is served.
            await Task.WhenAll(clients.Select(async (client, i) =>
            {
                await client.SendAsync($"client {i}\n");
                Assert.Equal($"client {i}", await client.ReadLineAsync());
            }));
            Assert.Equal(0, server.RefusedConnections);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_connection_refused_at_a_limit_is_told_why_then_closed_with_a_FIN()
    {
        await using var server = await fixture.Gateway.CreateServerAsync<EchoGrain>($"refusal-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.MaxConnections = 2;
            o.RefusalMessage = Refusal;
        });
        await using var first = await TestClient.ConnectAsync(server.EndPoints[0]);
        await using var second = await TestClient.ConnectAsync(server.EndPoints[0]);
        await first.SendAsync("in\n");
        Assert.Equal("in", await first.ReadLineAsync());
        await second.SendAsync("in\n");
        Assert.Equal("in", await second.ReadLineAsync());

        // The third, like redis-benchmark, sends its command at once: it still reads the refusal, then EOF (no reset).
        await using var third = await TestClient.ConnectAsync(server.EndPoints[0]);
        await third.SendAsync("PING\r\n");
        Assert.Equal(Refusal, Encoding.ASCII.GetString(await third.ReadToEndAsync()));
        Assert.Equal(1, server.RefusedConnections);
    }
}

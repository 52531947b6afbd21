using System.Net.Sockets;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>Limits: a hard cap on what a non-reading peer can make the gateway buffer, connection limits, idle timeout.</summary>
[Collection(GatewayCollection.Name)]
public sealed class LimitTests(GatewayClusterFixture fixture)
{
    private Task<ProtocolServer> CreateAsync<TGrain>(Action<ProtocolListenerOptions> configure)
        where TGrain : IProtocolGrain =>
        fixture.Gateway.CreateServerAsync<TGrain>($"limits-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            configure(o);
        });

    [Fact]
    public async Task A_peer_that_never_reads_while_its_grain_keeps_writing_is_aborted_at_the_hard_cap()
    {
        await using var server = await CreateAsync<ScriptGrain>(o => o.MaxWriteBufferSize = 256 * 1024);
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // 64 MiB, far beyond what the kernel's buffers absorb; the client reads nothing.
        await client.SendAsync($"blast {64 * 1024 * 1024}\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.WriteBufferLimit, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        await client.AssertDroppedAsync();
    }

    [Fact]
    public async Task Connections_over_the_listener_limit_are_closed_at_once_counted_and_the_others_keep_working()
    {
        await using var server = await CreateAsync<EchoGrain>(o => o.MaxConnections = 5);
        var admitted = new List<TestClient>();
        for (var i = 0; i < 5; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("in\n");
            Assert.Equal("in", await client.ReadLineAsync());
            admitted.Add(client);
        }

        for (var i = 0; i < 3; i++)
        {
            await TestClient.AssertDroppedAsync(server.EndPoints[0]);
        }

        Assert.Equal(3, server.RefusedConnections);
        foreach (var client in admitted)
        {
            await client.SendAsync("still\n");
            Assert.Equal("still", await client.ReadLineAsync());
        }

        // A place freed is a place taken: once the closed connection is gone, a new one is admitted. (Until then a
        // newcomer is refused; each attempt is a full connect, no sleep.)
        admitted[0].ShutdownSend();
        await admitted[0].ReadToEndAsync();
        var attempts = 0;
        while (true)
        {
            Assert.True(++attempts < 1000, "the freed place was never taken");
            try
            {
                await using var next = await TestClient.ConnectAsync(server.EndPoints[0]);
                await next.SendAsync("next\n");
                if (await next.ReadLineAsync() == "next")
                {
                    break;
                }
            }
            catch (Exception ex) when (ex is EndOfStreamException or SocketException)
            {
            }
        }
        foreach (var client in admitted)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Connections_over_the_per_address_limit_are_refused()
    {
        await using var server = await CreateAsync<EchoGrain>(o => o.MaxConnectionsPerAddress = 2);
        await using var first = await TestClient.ConnectAsync(server.EndPoints[0]);
        await using var second = await TestClient.ConnectAsync(server.EndPoints[0]);
        await first.SendAsync("a\n");
        Assert.Equal("a", await first.ReadLineAsync());
        await second.SendAsync("b\n");
        Assert.Equal("b", await second.ReadLineAsync());
        await TestClient.AssertDroppedAsync(server.EndPoints[0]);

        Assert.Equal(1, server.RefusedConnections);
    }

    [Fact]
    public async Task Two_hundred_connections_reset_mid_write_each_get_ConnectionLost_once_and_nothing_stays_open()
    {
        using var active = fixture.Collect<long>("orleansprotocol.active_connections");
        using var paused = fixture.Collect<long>("orleansprotocol.paused_connections");
        using var durations = fixture.Collect<double>("orleansprotocol.connection.duration");
        await using var server = await CreateAsync<ScriptGrain>(_ => { });
        var clients = new List<(TestClient Client, ConnectionRecord Record)>();
        for (var i = 0; i < 200; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            clients.Add((client, await fixture.Recorder.ForClientAsync(client.LocalEndPoint)));
        }

        // Every grain writes as fast as its connection takes it; every client resets without reading.
        foreach (var (client, _) in clients)
        {
            await client.SendAsync($"flood {16 * 1024 * 1024}\n");
        }

        await fixture.Recorder.WaitUntilAsync(() => clients.All(c => c.Record.Count("DR") > 0));
        foreach (var (client, _) in clients)
        {
            client.Reset();
        }

        await fixture.HealthyClientAsync(fixture.Recorder.WaitUntilAsync(() => clients.All(c => c.Record.Count("CL") == 1)));
        Assert.All(clients, c => Assert.Equal(1, c.Record.Count("CL")));

        // The counters return to zero: the server drains to no connection at all.
        server.Close();
        await server.WaitClosed().WaitAsync(TestTimeouts.Default);
        Assert.Equal(0, server.ConnectionCount);
        IEnumerable<CollectedMeasurement<T>> Mine<T>(MetricCollector<T> collector)
            where T : struct => collector.GetMeasurementSnapshot().Where(m => (string?)m.Tags["orleansprotocol.listener"] == server.Name);
        Assert.Equal(200, Mine(active).Count(m => m.Value == 1));
        Assert.Equal(0, Mine(active).Sum(m => m.Value));
        Assert.Equal(0, Mine(paused).Sum(m => m.Value));
        Assert.Equal(200, Mine(durations).Count());
        // Ended by the peer: a reset (which the socket layer now and then reports as a plain end of stream); or, on a
        // loaded machine, cut at the write-buffer cap first when a grain's 256 KiB writes outran its PauseWriting (the
        // clients never read) before the reset came.
        Assert.All(Mine(durations), m => Assert.Contains(
            m.Tags["orleansprotocol.close_reason"],
            new[] { nameof(ConnectionCloseReason.PeerReset), nameof(ConnectionCloseReason.PeerClosed), nameof(ConnectionCloseReason.WriteBufferLimit) }));
    }
}

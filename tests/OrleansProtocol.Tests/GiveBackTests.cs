using Microsoft.Extensions.DependencyInjection;
using OrleansProtocol.Diagnostics;
using OrleansProtocol.Gateway;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>
/// Every take has its give-back: thousands of connections through every path — served, refused at a limit, reset by
/// the peer (also while ConnectionMade runs), upgraded, stalled both ways, failing in ConnectionMade, junk PROXY and
/// TLS, refused after the PROXY header, drained — and then every counter, gauge, slot and registration is back at zero.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class GiveBackTests(GatewayClusterFixture fixture)
{
    private static async Task InParallelAsync(int count, int width, Func<int, Task> body)
    {
        await Task.WhenAll(Enumerable.Range(0, width).Select(worker => Task.Run(async () =>
        {
            for (var i = worker; i < count; i += width)
            {
                await body(i);
            }
        })));
    }

    private static async Task EchoAsync(TestClient client, string line)
    {
        await client.SendAsync(line + "\n");
        Assert.Equal(line, await client.ReadLineAsync());
    }

    [Fact]
    public async Task After_thousands_of_connections_through_every_path_every_counter_returns_to_zero()
    {
        using var active = fixture.Collect<long>("orleansprotocol.active_connections");
        using var paused = fixture.Collect<long>("orleansprotocol.paused_connections");
        var id = Guid.NewGuid().ToString("N")[..8];
        var main = await fixture.Gateway.CreateServerAsync<GiveBackGrain>($"giveback-{id}", o => o.Port = 0);
        var limited = await fixture.Gateway.CreateServerAsync<GiveBackGrain>($"giveback-limit-{id}", o =>
        {
            o.Port = 0;
            o.MaxConnections = 50;
        });
        var throwing = await fixture.Gateway.CreateServerAsync<ThrowOnMadeGrain>($"giveback-throw-{id}", o => o.Port = 0);
        var proxied = await fixture.Gateway.CreateServerAsync<GiveBackGrain>($"giveback-proxy-{id}", o =>
        {
            o.Port = 0;
            o.ProxyProtocol = true;
            o.ProxyTrustedNetworks = "127.0.0.0/8";
            o.MaxConnectionsPerAddress = 1;
            o.ProxyHeaderTimeout = TimeSpan.FromSeconds(5);
        });
        var tls = await fixture.Gateway.CreateServerAsync<GiveBackGrain>($"giveback-tls-{id}", o =>
        {
            o.Port = 0;
            o.Tls.CertificatePath = fixture.CertificatePath;
        });
        var servers = new[] { main, limited, throwing, proxied, tls };
        var endPoint = main.EndPoints[0];

        // Served, then closed by the client's EOF.
        await InParallelAsync(500, 8, async i =>
        {
            await using var client = await TestClient.ConnectAsync(endPoint);
            await EchoAsync(client, $"served {i}");
            client.ShutdownSend();
            Assert.Empty(await client.ReadToEndAsync());
        });

        // Reset by the peer once served, and reset while its ConnectionMade is still running.
        await InParallelAsync(500, 8, async i =>
        {
            var client = await TestClient.ConnectAsync(endPoint);
            await EchoAsync(client, $"reset {i}");
            client.Reset();
        });
        await InParallelAsync(300, 8, async _ => (await TestClient.ConnectAsync(endPoint)).Reset());

        // Upgraded (SetProtocol) to another protocol, which serves, then closes.
        await InParallelAsync(300, 8, async i =>
        {
            await using var client = await TestClient.ConnectAsync(endPoint);
            await client.SendAsync("upgrade\n");
            await EchoAsync(client, $"upgraded {i}");
            client.ShutdownSend();
            Assert.Empty(await client.ReadToEndAsync());
        });

        // Paused both ways (the protocol paused reading, its writes over the high-water mark), then reset.
        await InParallelAsync(200, 8, async i =>
        {
            var client = await TestClient.ConnectAsync(endPoint);
            await client.SendAsync("stall\n");

            // Paused both ways once the protocol hears PauseWriting (it paused reading itself first).
            var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
            await fixture.Recorder.WaitUntilAsync(() => record.Count("PW") > 0);
            client.Reset();
        });

        // Refused at the listener limit while 50 are open.
        var holders = new List<TestClient>();
        for (var i = 0; i < 50; i++)
        {
            holders.Add(await TestClient.ConnectAsync(limited.EndPoints[0]));
            await EchoAsync(holders[i], $"holder {i}");
        }

        await InParallelAsync(1000, 8, _ => TestClient.AssertDroppedAsync(limited.EndPoints[0]));
        Assert.Equal(1000, limited.RefusedConnections);
        foreach (var holder in holders)
        {
            await holder.DisposeAsync();
        }

        // Aborted because ConnectionMade failed.
        await InParallelAsync(300, 8, _ => TestClient.AssertDroppedAsync(throwing.EndPoints[0]));

        // Junk instead of a PROXY header; then refused once the header names a client that already has its one place.
        await InParallelAsync(300, 8, _ => TestClient.AssertDroppedAsync(proxied.EndPoints[0], "junk\r\n"u8.ToArray()));
        await using (var first = await TestClient.ConnectAsync(proxied.EndPoints[0]))
        {
            await first.SendAsync("PROXY TCP4 203.0.113.1 10.0.0.1 1000 7000\r\n");
            await EchoAsync(first, "first");
            await InParallelAsync(300, 8, i => TestClient.AssertDroppedAsync(
                proxied.EndPoints[0], System.Text.Encoding.ASCII.GetBytes($"PROXY TCP4 203.0.113.1 10.0.0.1 {1001 + i} 7000\r\n")));
            Assert.Equal(300, proxied.RefusedConnections);
        }

        // A failed TLS handshake.
        await InParallelAsync(300, 8, _ => TestClient.AssertDroppedAsync(tls.EndPoints[0], "junk\r\n"u8.ToArray()));

        // Drained: the server closes with 50 connections open.
        var drained = new List<TestClient>();
        for (var i = 0; i < 50; i++)
        {
            drained.Add(await TestClient.ConnectAsync(endPoint));
            await EchoAsync(drained[i], $"drained {i}");
        }

        await main.DisposeAsync();
        foreach (var client in drained)
        {
            Assert.Empty(await client.ReadToEndAsync());
            await client.DisposeAsync();
        }

        foreach (var server in servers)
        {
            await server.DisposeAsync();
        }

        await AssertEverythingGivenBackAsync(servers, active, paused);
    }

    private async Task AssertEverythingGivenBackAsync(
        ProtocolServer[] servers,
        Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long> active,
        Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long> paused)
    {
        var names = servers.Select(s => s.Name).ToHashSet();
        var gateway = fixture.Gateway;
        var metrics = fixture.Silo.GetRequiredService<GatewayMetrics>();
        var counters = fixture.Silo.GetRequiredService<ConnectionGrainCounters>();
        long Sum(Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long> collector) => collector.GetMeasurementSnapshot()
            .Where(m => names.Contains((string)m.Tags["orleansprotocol.listener"]!)).Sum(m => m.Value);

        // Every server is drained: each connection has ended, and its grain delivered ConnectionLost (the gateway awaits
        // it) — so nothing may be left, with no waiting.
        string Pending()
        {
            var live = gateway.Servers.SelectMany(s => s.Connections).ToList();
            var problems = new List<string>();
            void Check(string what, long value, long expected = 0)
            {
                if (value != expected)
                {
                    problems.Add($"{what} = {value} (expected {expected})");
                }
            }

            foreach (var server in servers)
            {
                Check($"{server.Name} connections", server.ConnectionCount);
                Check($"{server.Name} per-address places", server.CountedAddresses);
                var grains = counters.For(server.Name);
                Check($"{server.Name} grains holding a connection", grains.Connections);
                Check($"{server.Name} timers", grains.Timers);
                Check($"{server.Name} tasks", grains.Tasks);
                Check($"{server.Name} gateway watches", grains.GatewayWatches);
            }

            Check("active-connections metric", Sum(active));
            Check("paused-connections metric", Sum(paused));

            // Silo-wide invariants, whatever other connections are open: one budget place per live connection, and
            // one observer reference for the whole silo, however many connections came and went.
            Check("silo budget", gateway.BudgetedConnections, live.Count + gateway.OutboundConnectionCount);
            Check("observer references", metrics.ObserverReferences, 1);
            return string.Join("; ", problems);
        }

        Assert.Equal("", Pending());

        // Directory entries and activations: nothing left of any of these connections' grains.
        foreach (var name in names)
        {
            Assert.Empty(await fixture.Grains.ListConnectionsAsync(name));
        }

        var management = fixture.Grains.GetGrain<IManagementGrain>(0);
        var activations = (await management.GetSimpleGrainStatistics())
            .Where(s => s.GrainType.Contains("GiveBackGrain", StringComparison.Ordinal) || s.GrainType.Contains("ThrowOnMadeGrain", StringComparison.Ordinal))
            .Sum(s => s.ActivationCount);
        Assert.Equal(0, activations);
    }

    [Fact]
    public async Task A_callback_that_reaches_an_activation_without_the_connection_is_answered_unknown_and_leaves_no_activation()
    {
        // What a gateway meets when its connection's grain was lost with its silo: the next callback, or the question
        // where the grain is, activates it afresh. That activation has nothing to keep it and goes away.
        var grain = fixture.Grains.GetGrain<IScriptGrain>($"lost/{Guid.NewGuid():N}");
        var reply = await grain.Locate(bytesSent: 0);
        Assert.Equal(ProtocolReplyStatus.UnknownConnection, reply.Status);
        Assert.Equal(ProtocolReplyStatus.UnknownConnection, (await grain.DataReceived("x"u8.ToArray(), 0)).Status);
        await fixture.Cluster.WaitForDeactivationAsync(grain.GetGrainId()).WaitAsync(TestTimeouts.Default);
    }
}

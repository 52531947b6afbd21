using Microsoft.Extensions.DependencyInjection;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using OrleansProtocol.Gateway;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>
/// Hibernation on a real socket and a real silo, on the gateway's fake clock: a quiet connection's grain is
/// deactivated with its state at the gateway, and woken with that state by the peer's next bytes, its close, or a call
/// by id; ConnectionMade is not repeated and ConnectionLost comes once; a grain with a timer pending stays awake.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class HibernationTests(GatewayClusterFixture fixture)
{
    private static readonly TimeSpan After = TimeSpan.FromSeconds(30);

    private async Task<(ProtocolServer Server, FakeTimeProvider Time)> StartAsync(Action<ProtocolListenerOptions>? configure = null)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var server = await fixture.Gateway.CreateServerOnClockAsync<SleeperGrain>($"sleep-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.HibernateAfter = After;
            configure?.Invoke(o);
        }, time);
        return (server, time);
    }

    private static async Task<GatewayConnection> ConnectionOfAsync(ProtocolServer server, TestClient client)
    {
        GatewayConnection? found = null;
        await Poll.UntilAsync(
            () => (found = server.Connections.FirstOrDefault(c => Equals(c.Info.RemoteEndPoint, client.LocalEndPoint) && c.Made.IsCompleted)) is not null,
            () => "the server has no connection for the client");
        return found!;
    }

    /// <summary>
    /// Moves the clock on until the connection sleeps: a reply's last bytes may leave (and count as activity) a moment
    /// after the client read them, so one jump of <see cref="After"/> can fall just short.
    /// </summary>
    private static Task SleepsAsync(FakeTimeProvider time, ProtocolServer server, GatewayConnection connection) =>
        time.AdvanceUntilAsync(server, AsleepAsync(connection));

    private static Task AllSleepAsync(FakeTimeProvider time, ProtocolServer server, IEnumerable<GatewayConnection> connections) =>
        time.AdvanceUntilAsync(server, Task.WhenAll(connections.Select(c => AsleepAsync(c))));

    private static Task AsleepAsync(GatewayConnection connection, bool asleep = true) =>
        Poll.UntilAsync(() => connection.Sleep.IsAsleep == asleep, () => $"the connection is {(asleep ? "awake" : "asleep")}");

    // The gauge, summed over this test's listener from the collector made before its first connection.
    private static long Hibernated(Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long> gauge, ProtocolServer server) =>
        gauge.GetMeasurementSnapshot().Where(m => (string?)m.Tags["orleansprotocol.listener"] == server.Name).Sum(m => m.Value);

    [Fact]
    public async Task A_quiet_connection_sleeps_after_its_time_and_wakes_on_the_next_bytes_with_its_state()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        await using (server)
        {
            await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("one\ntw");
            Assert.Equal("1 1 one", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);

            // Not before its time: the check at 29 s of quiet does not even ask the grain.
            time.Advance(After - TimeSpan.FromSeconds(1), server);
            Assert.False(connection.Sleep.Asked || connection.Sleep.IsAsleep);
            await SleepsAsync(time, server, connection);
            Assert.Equal(1, Hibernated(gauge, server));

            // The half line read before the sleep, the count, one ConnectionMade: as if it had never slept.
            await client.SendAsync("o\n");
            Assert.Equal("2 2 two", await client.ReadLineAsync());
            Assert.False(connection.Sleep.IsAsleep);
            Assert.Equal(0, Hibernated(gauge, server));

            // And again.
            await SleepsAsync(time, server, connection);
            await client.SendAsync("three\n");
            Assert.Equal("3 3 three", await client.ReadLineAsync());
            Assert.Equal(1, SleeperGrain.Calls[connection.Id].Made);
        }
    }

    [Fact]
    public async Task A_grain_with_a_timer_pending_stays_awake_and_sleeps_once_it_is_cancelled()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        await using (server)
        {
            await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("later\n");
            Assert.Equal("1 1 later", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);

            // Asked, it declines (a CallLater is pending); asked again after the next quiet spell, it declines again.
            await time.AdvanceUntilAsync(server, Poll.UntilAsync(() => connection.Sleep.Answers >= 2, () => "the grain was not asked twice"));
            Assert.False(connection.Sleep.IsAsleep);

            await client.SendAsync("cancel\n");
            Assert.Equal("2 1 cancel", await client.ReadLineAsync());
            await SleepsAsync(time, server, connection);
        }
    }

    [Fact]
    public async Task A_call_by_id_wakes_a_sleeping_connection_and_its_write_reaches_the_peer()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        await using (server)
        {
            await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("hello\n");
            Assert.Equal("1 1 hello", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);
            await SleepsAsync(time, server, connection);

            await fixture.Grains.GetConnection(connection.Info).Send(Encoding.UTF8.GetBytes("pushed\n"));
            Assert.Equal("pushed", await client.ReadLineAsync());
            Assert.False(connection.Sleep.IsAsleep);

            await client.SendAsync("after\n");
            Assert.Equal("2 2 after", await client.ReadLineAsync());
        }
    }

    [Fact]
    public async Task The_peers_bytes_and_a_call_by_id_racing_to_wake_a_connection_wake_it_once_and_both_get_through()
    {
        var (server, time) = await StartAsync();
        await using (server)
        {
            var clients = new List<TestClient>();
            var connections = new List<GatewayConnection>();
            for (var i = 0; i < 20; i++)
            {
                var client = await TestClient.ConnectAsync(server.EndPoints[0]);
                await client.SendAsync("hi\n");
                Assert.Equal("1 1 hi", await client.ReadLineAsync());
                clients.Add(client);
                connections.Add(await ConnectionOfAsync(server, client));
            }

            await AllSleepAsync(time, server, connections);

            // Each connection is woken twice at once: by its gateway (the line) and by a call by id (the push).
            await Task.WhenAll(connections.Select(async (connection, i) =>
            {
                await Task.WhenAll(
                    clients[i].SendAsync("line\n"),
                    fixture.Grains.GetConnection(connection.Info).Send(Encoding.UTF8.GetBytes("pushed\n")));
                var lines = new[] { await clients[i].ReadLineAsync(), await clients[i].ReadLineAsync() };
                Assert.Equal(["2 2 line", "pushed"], lines.Order(StringComparer.Ordinal));
                Assert.Equal((2, 1, 0), SleeperGrain.Calls[connection.Id]);
            }));

            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task The_idle_clock_keeps_counting_while_a_connection_sleeps_and_its_close_wakes_the_grain_once()
    {
        var (server, time) = await StartAsync(o => o.IdleTimeout = 3 * After);
        await using (server)
        {
            await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("hi\n");
            Assert.Equal("1 1 hi", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);
            await SleepsAsync(time, server, connection);

            // Asleep since about 30 s of quiet; the idle timeout (90 s) still ends it, waking the grain to close.
            await time.AdvanceUntilAsync(server, connection.Completion);
            Assert.Empty(await client.ReadToEndAsync());
            Assert.Equal((2, 1, 1), SleeperGrain.Calls[connection.Id]);
        }
    }

    [Fact]
    public async Task A_peer_closing_a_sleeping_connection_wakes_it_for_one_ConnectionLost()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        await using (server)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync("bye\n");
            Assert.Equal("1 1 bye", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);
            await SleepsAsync(time, server, connection);

            await client.DisposeAsync();
            await connection.Completion.WaitAsync(TestTimeouts.Default);
            Assert.Equal((2, 1, 1), SleeperGrain.Calls[connection.Id]);
            Assert.Equal(0, Hibernated(gauge, server));
        }
    }

    [Fact]
    public async Task A_listener_closing_wakes_its_sleeping_connections_to_say_goodbye_and_closes_them_cleanly()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        await using (client)
        {
            await client.SendAsync("hi\n");
            Assert.Equal("1 1 hi", await client.ReadLineAsync());
            var connection = await ConnectionOfAsync(server, client);
            await SleepsAsync(time, server, connection);

            // The drain asks every connection's grain to close: this one wakes for it, then the FIN, never a reset.
            await server.DisposeAsync();
            Assert.Empty(await client.ReadToEndAsync());
            await connection.Completion.WaitAsync(TestTimeouts.Default);
            Assert.Equal((2, 1, 1), SleeperGrain.Calls[connection.Id]);
            Assert.Equal(0, Hibernated(gauge, server));
        }
    }

    [Fact]
    public async Task Many_sleep_and_wake_cycles_on_many_connections_leave_nothing_behind()
    {
        using var gauge = fixture.Collect<long>("orleansprotocol.hibernated_connections");
        var (server, time) = await StartAsync();
        var counters = fixture.Silo.GetRequiredService<OrleansProtocol.Diagnostics.ConnectionGrainCounters>();
        await using (server)
        {
            var clients = new List<TestClient>();
            for (var i = 0; i < 50; i++)
            {
                var client = await TestClient.ConnectAsync(server.EndPoints[0]);
                await client.SendAsync("hi\n");
                Assert.Equal("1 1 hi", await client.ReadLineAsync());
                clients.Add(client);
            }

            var connections = new List<GatewayConnection>();
            foreach (var client in clients)
            {
                connections.Add(await ConnectionOfAsync(server, client));
            }

            // 50 connections × 40 cycles: 2,000 sleeps and wakes.
            const int Cycles = 40;
            for (var cycle = 0; cycle < Cycles; cycle++)
            {
                await AllSleepAsync(time, server, connections);

                Assert.Equal(connections.Count, Hibernated(gauge, server));
                await Task.WhenAll(clients.Select(async c =>
                {
                    await c.SendAsync($"c{cycle}\n");
                    Assert.Equal($"{cycle + 2} {cycle + 2} c{cycle}", await c.ReadLineAsync());
                }));
            }

            // One ends awake, the others asleep.
            await AllSleepAsync(time, server, connections);

            await clients[0].SendAsync("x\n");
            await clients[0].ReadLineAsync();
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }

            foreach (var connection in connections)
            {
                await connection.Completion.WaitAsync(TestTimeouts.Default);
                Assert.Equal(1, SleeperGrain.Calls[connection.Id].Lost);
                Assert.Equal(1, SleeperGrain.Calls[connection.Id].Made);
            }

            Assert.Equal(0, Hibernated(gauge, server));
            await Poll.UntilAsync(() => counters.For(server.Name).Connections == 0, () => $"{counters.For(server.Name).Connections} connections still counted by their grains");
        }
    }
}

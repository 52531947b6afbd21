using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>
/// A connection outlives the silo of its grain: a graceful stop of that silo moves the grains of protocols that can
/// move to their sockets' silos, byte-exact, and closes the others cleanly (flush, FIN, ConnectionLost once).
/// </summary>
public sealed class MigrationTests
{
    private static async Task<InProcessTestCluster> StartClusterAsync(CallbackRecorder recorder, Action<Orleans.Hosting.ISiloBuilder>? configure = null)
    {
        var builder = new InProcessTestClusterBuilder(3);
        builder.Options.UseDistributedGrainDirectory = true;
        builder.ConfigureSilo((_, silo) =>
        {

            silo.Services.AddSingleton(recorder);
            silo.AddProtocolGateway(o => o.DrainTimeout = TimeSpan.FromSeconds(10));
            silo.AddProtocolListener<EchoGrain>("remote-echo", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
            });
            silo.AddProtocolListener<ScriptGrain>("remote-script", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
            });
            configure?.Invoke(silo);
        });
        var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForLivenessToStabilizeAsync();
        return cluster;
    }

    [Fact]
    public async Task A_graceful_stop_of_the_grains_silo_moves_echo_connections_byte_exact_and_closes_the_others_after_their_data()
    {
        var recorder = new CallbackRecorder();
        var logs = new CapturingLoggerProvider(LogLevel.Warning);
        await using var cluster = await StartClusterAsync(recorder, silo => silo.Services.AddLogging(logging => logging.AddProvider(logs)));
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        var stopping = cluster.Silos[1];

        // Streams on silo 0 whose grains are on silo 1 or 2 (Remote placement picks at random).
        var streams = new List<StreamingEchoClient>();
        for (var i = 0; i < 20; i++)
        {
            streams.Add(await StreamingEchoClient.StartAsync(gateway.GetServer("remote-echo").EndPoints[0], seed: i));
        }

        await Task.WhenAll(streams.Select(s => s.WaitForProgressAsync()));
        Assert.Contains(gateway.GetServer("remote-echo").Connections, c => c.GrainSilo == stopping.SiloAddress.ToString());

        // A protocol that cannot move, on the stopping silo, with 3 MB written that the client has not read yet.
        TestClient script;
        while (true)
        {
            script = await TestClient.ConnectAsync(gateway.GetServer("remote-script").EndPoints[0]);
            await script.SendAsync("whereami\n");
            if (await script.ReadLineAsync() == stopping.SiloAddress.ToString())
            {
                break;
            }

            await script.DisposeAsync();
        }

        await using var disposeScript = script;
        var record = await recorder.ForClientAsync(script.LocalEndPoint);
        await script.SendAsync("blast 3000000\n");
        await script.ReadExactlyAsync(1);
        var expected = 3_000_000 - 1;

        await cluster.StopSiloAsync(stopping);

        // Every stream goes on: no reset, no byte lost, duplicated or out of order, and the gateway follows its grain.
        await WithWarningsAsync(logs, Task.WhenAll(streams.Select(s => s.WaitForProgressAsync())));
        foreach (var stream in streams)
        {
            await stream.StopAsync();
            Assert.Null(stream.Failure);
            Assert.False(stream.EndedByServer);
        }

        Assert.DoesNotContain(gateway.GetServer("remote-echo").Connections, c => c.GrainSilo == stopping.SiloAddress.ToString());

        // The protocol that could not move: everything it wrote, then a FIN (no reset), and ConnectionLost once, saying
        // the server was stopping.
        Assert.Equal(expected, (await script.ReadToEndAsync()).Length);
        await recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.ServerShutdown, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        Assert.Equal(1, record.Count("CL"));

        foreach (var stream in streams)
        {
            await stream.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_operator_moves_a_busy_connections_grain_back_and_forth_between_silos_without_the_peer_noticing()
    {
        var recorder = new CallbackRecorder();
        await using var cluster = await StartClusterAsync(recorder);
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        var grains = cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>();
        await using var stream = await StreamingEchoClient.StartAsync(gateway.GetServer("remote-echo").EndPoints[0], seed: 7, pace: TimeSpan.Zero);
        await stream.WaitForProgressAsync();
        var connection = gateway.GetServer("remote-echo").Connections.Single();

        // As the rebalancer would (Orleans migration): between the two silos that are not the socket's, each move
        // straight back to the silo the grain has just left, as soon as the gateway follows it (Orleans drops a move to
        // a silo still letting go of the activation that left it, unless the grain waits for that); then to the
        // socket's silo. The stream runs throughout.
        var first = cluster.Silos.Skip(1).Select(s => s.SiloAddress).Single(s => s.ToString() == connection.GrainSilo);
        var other = cluster.Silos.Skip(1).Select(s => s.SiloAddress).Single(s => s.ToString() != connection.GrainSilo);
        var moves = Enumerable.Range(0, 12).Select(i => i % 2 == 0 ? other : first).Append(cluster.Silos[0].SiloAddress);
        foreach (var (move, to) in moves.Select((to, move) => (move, to)))
        {
            RequestContext.Set(Orleans.Runtime.Placement.IPlacementDirector.PlacementHintKey, to);
            await grains.GetGrain<IProtocolGrain>(Orleans.Runtime.GrainId.Create(Orleans.Runtime.GrainType.Create(connection.Info.GrainType!), connection.Id))
                .AsReference<Orleans.Core.Internal.IGrainManagementExtension>().MigrateOnIdle();
            RequestContext.Remove(Orleans.Runtime.Placement.IPlacementDirector.PlacementHintKey);
            await Poll.UntilAsync(
                () => connection.GrainSilo == to.ToString() || connection.Completion.IsCompleted,
                () => $"move {move}: the grain is on {connection.GrainSilo}, not {to}; echoed {stream.Echoed}, failure {stream.Failure?.Message}, buffered {connection.WriteBufferSize}");
            Assert.False(connection.Completion.IsCompleted, $"move {move} to {to} lost the connection: {connection.CloseReason}");
        }

        await stream.WaitForProgressAsync();
        await stream.StopAsync();
        Assert.Null(stream.Failure);
        Assert.False(stream.EndedByServer);
    }

    [Fact]
    public async Task A_moved_grain_whose_notice_reaches_the_gateway_after_its_old_silo_is_declared_dead_keeps_its_connection()
    {
        // Membership can declare the stopped silo dead before the gateway hears from the grain's new activation (under
        // load, or here: its notice held back until the gateway has seen the death). The gateway must not take the
        // silo's end for the grain's death: the grain moved, and the connection goes on.
        var recorder = new CallbackRecorder();
        var held = new HeldNotices();
        var logs = new CapturingLoggerProvider(LogLevel.Debug);
        await using var cluster = await StartClusterAsync(recorder, silo =>
        {
            silo.Services.AddSingleton(held);
            silo.Services.AddLogging(logging => logging.AddProvider(logs).AddFilter<CapturingLoggerProvider>("OrleansProtocol", LogLevel.Debug));
            silo.AddOutgoingGrainCallFilter(held.HoldAsync);
        });
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        await using var client = await TestClient.ConnectAsync(gateway.GetServer("remote-echo").EndPoints[0]);
        await client.SendAsync("before\n");
        Assert.Equal("before", await client.ReadLineAsync());
        var connection = gateway.GetServer("remote-echo").Connections.Single();
        var stopping = cluster.Silos.Single(s => s.SiloAddress.ToString() == connection.GrainSilo);

        held.Hold(Orleans.Runtime.GrainId.Create(Orleans.Runtime.GrainType.Create(connection.Info.GrainType!), connection.Id));
        await cluster.StopSiloAsync(stopping);
        // The gateway has taken in the silo's death while the grain's notice is held.
        await logs.WaitForAsync(m => m.Contains(connection.Id) && m.Contains(stopping.SiloAddress.ToString()));
        held.Release();

        await client.SendAsync("after\n");
        Assert.Equal("after", await client.ReadLineAsync());
        Assert.Equal(cluster.Silos[0].SiloAddress.ToString(), connection.GrainSilo);
        Assert.False(connection.Completion.IsCompleted);
    }

    [Fact]
    public async Task A_connection_whose_grain_went_away_without_a_word_in_a_graceful_stop_is_reset_once_the_silo_is_gone()
    {
        // The grain cannot move and its close never reaches the gateway (lost here on purpose): asked where it is once
        // its silo is declared dead, the grain's id finds only an activation without the connection, and the idle
        // client is reset rather than left open with nothing behind it.
        var recorder = new CallbackRecorder();
        var held = new HeldNotices();
        var logs = new CapturingLoggerProvider();
        await using var cluster = await StartClusterAsync(recorder, silo =>
        {
            silo.Services.AddSingleton(held);
            silo.Services.AddLogging(logging => logging.AddProvider(logs));
            silo.AddOutgoingGrainCallFilter(held.HoldAsync);
        });
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        await using var client = await TestClient.ConnectAsync(gateway.GetServer("remote-script").EndPoints[0]);
        await client.SendAsync("whereami\n");
        var grainSilo = await client.ReadLineAsync();
        var connection = gateway.GetServer("remote-script").Connections.Single();
        var stopping = cluster.Silos.Single(s => s.SiloAddress.ToString() == grainSilo);

        held.Drop(Orleans.Runtime.GrainId.Create(Orleans.Runtime.GrainType.Create(connection.Info.GrainType!), connection.Id));
        await cluster.StopSiloAsync(stopping);

        var ended = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(async () => await client.ReadToEndAsync());
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionReset, ended.SocketErrorCode);
        Assert.Equal(ConnectionCloseReason.GrainUnavailable, connection.CloseReason);
        Assert.Contains(logs.Entries, e => e.Message.Contains(connection.Id) && e.Message.Contains("the grain has no record of this connection"));
    }

    [Fact]
    public async Task A_call_Orleans_did_not_deliver_goes_again_and_the_peer_notices_nothing_but_one_never_delivered_ends_the_connection()
    {
        // Orleans rejects a request it did not deliver, as the silo a grain just left does once it stops forwarding;
        // here a filter rejects the first delivery of each chosen call, or every delivery for one connection.
        var recorder = new CallbackRecorder();
        var rejections = new RejectedCalls();
        var logs = new CapturingLoggerProvider(LogLevel.Debug);
        await using var cluster = await StartClusterAsync(recorder, silo =>
        {
            silo.Services.AddLogging(logging => logging.AddProvider(logs).AddFilter<CapturingLoggerProvider>("OrleansProtocol", LogLevel.Debug));
            silo.AddOutgoingGrainCallFilter(rejections.RejectAsync);
        });
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        Orleans.Runtime.GrainId GrainOf(TestClient client) => gateway.GetServer("remote-echo").Connections
            .Where(c => Equals(c.Info.RemoteEndPoint, client.LocalEndPoint))
            .Select(c => Orleans.Runtime.GrainId.Create(Orleans.Runtime.GrainType.Create(c.Info.GrainType!), c.Id)).Single();

        // Healthy: each DataReceived is rejected once, then delivered; every line comes back once, in order.
        await using var healthy = await TestClient.ConnectAsync(gateway.GetServer("remote-echo").EndPoints[0]);
        await healthy.SendAsync("first\n");
        Assert.Equal("first", await healthy.ReadLineAsync());
        rejections.RejectFirstDelivery(GrainOf(healthy));
        for (var i = 0; i < 20; i++)
        {
            await healthy.SendAsync($"line {i}\n");
            Assert.Equal($"line {i}", await healthy.ReadLineAsync());
        }

        Assert.Equal(20, rejections.Rejected);
        Assert.Contains(logs.Entries, e => e.Message.Contains("Orleans did not deliver a call to the grain"));

        // Never delivered: after a few attempts the connection gives up on its grain and resets.
        await using var doomed = await TestClient.ConnectAsync(gateway.GetServer("remote-echo").EndPoints[0]);
        await doomed.SendAsync("first\n");
        Assert.Equal("first", await doomed.ReadLineAsync());
        var connection = gateway.GetServer("remote-echo").Connections.Single(c => Equals(c.Info.RemoteEndPoint, doomed.LocalEndPoint));
        rejections.RejectEveryDelivery(GrainOf(doomed));
        await doomed.SendAsync("lost\n");
        var ended = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(async () => await doomed.ReadToEndAsync());
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionReset, ended.SocketErrorCode);
        Assert.Equal(ConnectionCloseReason.GrainUnavailable, connection.CloseReason);
    }

    /// <summary>Rejects gateway calls to chosen grains as Orleans rejects an undelivered request.</summary>
    private sealed class RejectedCalls
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<Orleans.Runtime.GrainId, bool> _everyDelivery = new();
        private readonly System.Collections.Concurrent.ConcurrentDictionary<Orleans.Runtime.GrainId, byte> _rejectedOnce = new();
        private int _rejected;

        public int Rejected => Volatile.Read(ref _rejected);

        public void RejectFirstDelivery(Orleans.Runtime.GrainId grain) => _everyDelivery[grain] = false;

        public void RejectEveryDelivery(Orleans.Runtime.GrainId grain) => _everyDelivery[grain] = true;

        public Task RejectAsync(IOutgoingGrainCallContext context)
        {
            if (context.InterfaceMethod?.Name == nameof(IProtocolGrain.DataReceived)
                && _everyDelivery.TryGetValue(context.TargetId, out var every)
                && (every || _rejectedOnce.TryRemove(context.TargetId, out _) is false && _rejectedOnce.TryAdd(context.TargetId, 0)))
            {
                Interlocked.Increment(ref _rejected);
                throw (Exception)Activator.CreateInstance(
                    typeof(Orleans.Runtime.OrleansMessageRejectionException),
                    System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance,
                    binder: null,
                    args: ["Silo stopping (rejected by the test)"],
                    culture: null)!;
            }

            return context.Invoke();
        }
    }

    /// <summary>A failure says what the silos warned of (why a connection was reset, say).</summary>
    private static async Task WithWarningsAsync(CapturingLoggerProvider logs, Task task)
    {
        try
        {
            await task;
        }
        catch (Exception ex)
        {
            var warnings = logs.Entries.Select(e => $"{e.Level} {e.Category}: {e.Message} {e.Scopes} {e.Exception?.GetType().Name}: {e.Exception?.Message}").Take(40);
            throw new Xunit.Sdk.XunitException($"{ex.Message}{Environment.NewLine}The silos warned:{Environment.NewLine}{string.Join(Environment.NewLine, warnings)}");
        }
    }

    /// <summary>Holds back, or drops, the grain's notices to the gateway (transport observer calls) while asked to.</summary>
    private sealed class HeldNotices
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Orleans.Runtime.GrainId? _grain;
        private bool _drop;

        public void Hold(Orleans.Runtime.GrainId grain) => _grain = grain;

        public void Drop(Orleans.Runtime.GrainId grain) => (_grain, _drop) = (grain, true);

        public void Release() => _released.TrySetResult();

        public async Task HoldAsync(IOutgoingGrainCallContext context)
        {
            if (context.InterfaceMethod?.DeclaringType == typeof(ITransportObserver) && context.SourceId == _grain)
            {
                if (_drop)
                {
                    throw new InvalidOperationException("Dropped by the test.");
                }

                await _released.Task.WaitAsync(TestTimeouts.Default);
            }

            await context.Invoke();
        }
    }
}

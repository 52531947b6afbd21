using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Stopping the silo is the nursery's exit: stop accepting, close every connection, tell every grain once.</summary>
public sealed class SiloShutdownTests
{
    private static async Task<(InProcessTestCluster Cluster, EndPoint EndPoint)> StartClusterAsync(
        CallbackRecorder recorder, TimeSpan drainTimeout, ILoggerProvider? logs = null, TimeProvider? gatewayTime = null)
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.Options.InitializeClientOnDeploy = false;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(recorder);
            if (logs is not null)
            {
                silo.Services.AddSingleton(logs);
            }

            if (gatewayTime is not null)
            {
                silo.Services.AddKeyedSingleton(ProtocolGatewayOptions.TimeProviderKey, gatewayTime);
            }

            silo.AddProtocolGateway(o => o.DrainTimeout = drainTimeout);
            silo.AddProtocolListener<ScriptGrain>("script", o =>
            {
                o.Port = 0;

                // On a clock the test moves by the hour, the stall would meet the send rate before the drain deadline.
                o.MinSendDataRate = gatewayTime is null ? o.MinSendDataRate : null;
            });
        });
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return (cluster, cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>().GetServer("script").EndPoints[0]);
    }

    [Fact]
    public async Task Stopping_the_silo_mid_traffic_on_200_connections_ends_each_once_with_its_answered_data_within_the_deadline()
    {
        var recorder = new CallbackRecorder();
        var logs = new CapturingLoggerProvider();
        var drainTimeout = TimeSpan.FromSeconds(10);
        var (cluster, endPoint) = await StartClusterAsync(recorder, drainTimeout, logs);
        await using var disposeCluster = cluster;

        var clients = new List<TestClient>();
        for (var i = 0; i < 200; i++)
        {
            clients.Add(await TestClient.ConnectAsync(endPoint));
        }

        // Every client asks for numbered echoes, back to back, until the connection ends.
        var traffic = clients.Select(client => Task.Run(async () =>
        {
            var answered = 0;
            try
            {
                while (true)
                {
                    await client.SendAsync($"echo {answered}\n");
                    var line = await client.ReadLineAsync();
                    Assert.Equal($"{answered}", line);
                    answered++;
                }
            }
            catch (Exception ex) when (ex is EndOfStreamException or System.Net.Sockets.SocketException)
            {
                // The silo closed the connection; every answer before that arrived whole and in order.
            }

            return answered;
        })).ToList();

        var records = new List<ConnectionRecord>();
        foreach (var client in clients)
        {
            records.Add(await recorder.ForClientAsync(client.LocalEndPoint));
        }

        await recorder.WaitUntilAsync(() => records.All(r => r.Count("DR") > 0));
        await cluster.StopSiloAsync(cluster.Silos[0]);

        var answered = await Task.WhenAll(traffic);
        Assert.All(answered, count => Assert.True(count > 0));
        foreach (var record in records)
        {
            Assert.Equal(1, record.Count("CL"));
            ConnectionLifecycleTests.AssertCallOrder(record);
            Assert.Equal(ConnectionCloseReason.ServerShutdown, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        }

        // Within the deadline: none had to be aborted when it passed.
        Assert.DoesNotContain(logs.Entries, e => e.Message.Contains("did not close within the drain timeout"));
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Connections_that_cannot_drain_are_aborted_at_the_deadline_with_a_warning_naming_how_many()
    {
        var recorder = new CallbackRecorder();
        var logs = new CapturingLoggerProvider();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var drainTimeout = TimeSpan.FromHours(1);
        var (cluster, endPoint) = await StartClusterAsync(recorder, drainTimeout, logs, time);
        await using var disposeCluster = cluster;

        // One connection whose peer never reads while its grain has far more to send than the kernel buffers hold:
        // its close cannot flush. Another that closes cleanly.
        await using var stuck = await TestClient.ConnectAsync(endPoint);
        var stuckRecord = await recorder.ForClientAsync(stuck.LocalEndPoint);
        await stuck.SendAsync("flood 67108864\n");
        var server = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>().GetServer("script");
        var stuckConnection = server.Connections.Single(c => c.Id == stuckRecord.Connection.ConnectionId);

        // Stuck: the gateway holds more than the high-water mark and sends nothing, because the kernel's buffers are
        // full. Checked over several flood ticks (the grain's timer wakes the recorder every 5 ms).
        var lastSent = -1L;
        var unchanged = 0;
        await recorder.WaitUntilAsync(() =>
        {
            var sent = stuckConnection.BytesSent;
            unchanged = sent == lastSent && stuckConnection.WriteBufferSize > ProtocolTransport.DefaultWriteBufferHigh ? unchanged + 1 : 0;
            lastSent = sent;
            return unchanged >= 5;
        });
        await using var fine = await TestClient.ConnectAsync(endPoint);
        var fineRecord = await recorder.ForClientAsync(fine.LocalEndPoint);
        var fineConnection = server.Connections.Single(c => c.Id == fineRecord.Connection.ConnectionId);

        // The drain begins: the connection that can close does; the stuck one holds the stop until the deadline.
        var stopping = cluster.StopSiloAsync(cluster.Silos[0]);
        await recorder.WaitUntilAsync(() => fineRecord.Count("CL") == 1);
        Assert.False(stopping.IsCompleted);
        Assert.Equal(0, stuckRecord.Count("CL"));

        // The closed one's client takes its FIN and closes too, so only the stuck one is left for the deadline.
        Assert.Empty(await fine.ReadToEndAsync());
        await fine.DisposeAsync();
        await fineConnection.Completion.WaitAsync(TestTimeouts.Default);
        time.Advance(drainTimeout);
        await stopping.WaitAsync(TestTimeouts.Default);

        var warning = await logs.WaitForAsync(m => m.Contains("did not close within the drain timeout"));
        Assert.Contains(" 1 connection(s)", warning);
        Assert.Equal(1, stuckRecord.Count("CL"));
        Assert.Equal(1, fineRecord.Count("CL"));
    }

    [Fact]
    public async Task Stopping_the_silo_closes_every_connection_after_its_data_and_delivers_ConnectionLost_once()
    {
        var recorder = new CallbackRecorder();
        var builder = new InProcessTestClusterBuilder(1);
        builder.Options.InitializeClientOnDeploy = false;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(recorder);
            silo.AddProtocolGateway(o => o.DrainTimeout = TimeSpan.FromSeconds(10));
            silo.AddProtocolListener<ScriptGrain>("script", o => o.Port = 0);
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var endPoint = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>().GetServer("script").EndPoints[0];

        var clients = new List<TestClient>();
        var records = new List<ConnectionRecord>();
        for (var i = 0; i < 20; i++)
        {
            var client = await TestClient.ConnectAsync(endPoint);
            await client.SendAsync($"echo hello {i}\n");
            Assert.Equal($"hello {i}", await client.ReadLineAsync());
            clients.Add(client);
            records.Add(await recorder.ForClientAsync(client.LocalEndPoint));
        }

        // Data written just before the stop must still arrive, ahead of the EOF.
        var grains = cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>();
        foreach (var record in records)
        {
            await grains.GetGrain<IScriptGrain>(record.Connection.ConnectionId).WriteNow("last words\n");
        }

        await cluster.StopSiloAsync(cluster.Silos[0]);

        foreach (var client in clients)
        {
            Assert.Equal("last words\n", Encoding.UTF8.GetString(await client.ReadToEndAsync()));
        }

        foreach (var record in records)
        {
            Assert.Equal(1, record.Count("CL"));
            ConnectionLifecycleTests.AssertCallOrder(record);
            var exception = Assert.IsType<ConnectionClosedException>(record.LostException);
            Assert.Equal(ConnectionCloseReason.ServerShutdown, exception.Reason);
        }

        // Nothing listens any more.
        await Assert.ThrowsAnyAsync<SocketException>(() => TestClient.ConnectAsync(endPoint));
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }
}

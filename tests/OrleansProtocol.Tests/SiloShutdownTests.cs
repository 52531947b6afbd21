using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Hosting;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Stopping the silo is the nursery's exit: stop accepting, close every connection, tell every grain once.</summary>
public sealed class SiloShutdownTests
{
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

using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Losing the silo of a connection's grain closes that connection promptly and leaves the others alone.</summary>
public sealed class SiloFailureTests
{
    /// <summary>Two silos; on each, a listener whose grains go to the other silo and one whose grains stay local.</summary>
    private static async Task<InProcessTestCluster> StartClusterAsync(CallbackRecorder recorder)
    {
        var builder = new InProcessTestClusterBuilder(2);

        // As the host runs in production (see ClusteringConfiguration): the default directory drops grains when a silo leaves.
        builder.Options.UseDistributedGrainDirectory = true;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(recorder);
            silo.AddProtocolListener<ScriptGrain>("remote-script", o =>
            {
                o.Port = 0;
                o.Placement = ConnectionPlacement.Remote;
            });
            silo.AddProtocolListener<EchoGrain>("local-echo", o => o.Port = 0);
        });
        var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForLivenessToStabilizeAsync();
        return cluster;
    }

    [Fact]
    public async Task Killing_the_grains_silo_closes_its_connections_promptly_and_leaves_local_ones_echoing()
    {
        var recorder = new CallbackRecorder();
        await using var cluster = await StartClusterAsync(recorder);
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();

        // Socket on silo 0, grain on silo 1; and a connection wholly on silo 0.
        await using var remote = await TestClient.ConnectAsync(gateway.GetServer("remote-script").EndPoints[0]);
        await remote.SendAsync("whereami\n");
        Assert.Equal(cluster.Silos[1].SiloAddress.ToString(), await remote.ReadLineAsync());
        await using var local = await TestClient.ConnectAsync(gateway.GetServer("local-echo").EndPoints[0]);
        await local.SendAsync("x\n");
        Assert.Equal("x", await local.ReadLineAsync());

        await cluster.KillSiloAsync(cluster.Silos[1]);

        // The idle remote connection is closed without the client sending anything, once membership declares the
        // silo dead (Orleans' real-time probes; the read's own timeout bounds the wait).
        try
        {
            Assert.Empty(await remote.ReadToEndAsync());
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        for (var i = 0; i < 10; i++)
        {
            await local.SendAsync($"still {i}\n");
            Assert.Equal($"still {i}", await local.ReadLineAsync());
        }
    }

    [Fact]
    public async Task Killing_the_sockets_silo_ends_the_remote_grains_connections_once_and_leaves_no_activation()
    {
        var recorder = new CallbackRecorder();
        await using var cluster = await StartClusterAsync(recorder);

        // Socket on silo 1, grain on silo 0.
        var gateway = cluster.Silos[1].ServiceProvider.GetRequiredService<ProtocolGateway>();
        await using var client = await TestClient.ConnectAsync(gateway.GetServer("remote-script").EndPoints[0]);
        var record = await recorder.ForClientAsync(client.LocalEndPoint);
        await client.SendAsync("whereami\n");
        Assert.Equal(cluster.Silos[0].SiloAddress.ToString(), await client.ReadLineAsync());
        var grainId = cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>()
            .GetGrain<IScriptGrain>(record.Connection.ConnectionId).GetGrainId();

        var management = cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>().GetGrain<Orleans.Runtime.IManagementGrain>(0);
        async Task<int> ProtocolActivations() =>
            (await management.GetSimpleGrainStatistics())
                .Where(s => s.GrainType.Contains("ScriptGrain", StringComparison.OrdinalIgnoreCase))
                .Sum(s => s.ActivationCount);
        Assert.Equal(1, await ProtocolActivations());

        await cluster.KillSiloAsync(cluster.Silos[1]);

        // The grain, on the surviving silo, hears of it once and goes away: nothing is orphaned.
        await recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        await cluster.WaitForDeactivationAsync(grainId).WaitAsync(TestTimeouts.Default);
        Assert.False(cluster.TryGetGrainContext(grainId, out _));
        Assert.Equal(1, record.Count("CL"));

        // Counted the way an operator would: Orleans' management grain reports no protocol grain activation left (its
        // statistics may trail the deactivation by a moment; a leak would keep the count for good).
        await Poll.UntilAsync(async () => await ProtocolActivations() == 0, () => "a ScriptGrain activation is left behind");
    }
}

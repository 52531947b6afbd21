using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The connection directory asks every silo's gateway: exact, with no per-connection registration, before and after a
/// silo fails.
/// </summary>
public sealed class DirectoryTests
{
    [Fact]
    public async Task The_listing_is_exactly_the_live_connections_on_three_silos_before_and_after_one_is_killed()
    {
        var builder = new InProcessTestClusterBuilder(3);
        builder.Options.UseDistributedGrainDirectory = true;
        builder.ConfigureSilo((_, silo) => silo.AddProtocolListener<EchoGrain>("dir-echo", o => o.Port = 0));
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForLivenessToStabilizeAsync();

        var clients = new List<(int Silo, TestClient Client)>();
        for (var silo = 0; silo < 3; silo++)
        {
            var endPoint = cluster.Silos[silo].ServiceProvider.GetRequiredService<ProtocolGateway>().GetServer("dir-echo").EndPoints[0];
            for (var i = 0; i < 3; i++)
            {
                var client = await TestClient.ConnectAsync(endPoint);
                await client.SendAsync("hi\n");
                Assert.Equal("hi", await client.ReadLineAsync());
                clients.Add((silo, client));
            }
        }

        IGrainFactory Grains(int silo) => cluster.Silos[silo].ServiceProvider.GetRequiredService<IGrainFactory>();
        HashSet<string> Peers(IEnumerable<ConnectionInfo> listed) => listed.Select(c => c.RemoteEndPoint!.ToString()).ToHashSet();
        HashSet<string> Expected(Func<int, bool> silos) => clients.Where(c => silos(c.Silo)).Select(c => c.Client.LocalEndPoint.ToString()).ToHashSet();

        // From every silo, the same nine connections; found by id from anywhere.
        for (var silo = 0; silo < 3; silo++)
        {
            Assert.Equal(Expected(_ => true), Peers(await Grains(silo).ListConnectionsAsync("dir-echo")));
        }

        var listed = await Grains(0).ListConnectionsAsync("dir-echo");
        var onSilo2 = listed.First(c => c.GatewaySilo == cluster.Silos[2].SiloAddress.ToParsableString());
        Assert.NotNull(await Grains(1).FindConnectionAsync(onSilo2.ConnectionId));

        await cluster.KillSiloAsync(cluster.Silos[2]);

        // Exactly the six that live on: nothing stale from the dead silo, nothing forgotten because a directory died.
        for (var silo = 0; silo < 2; silo++)
        {
            Assert.Equal(Expected(s => s != 2), Peers(await Grains(silo).ListConnectionsAsync("dir-echo")));
        }

        Assert.Null(await Grains(1).FindConnectionAsync(onSilo2.ConnectionId));
        foreach (var (_, client) in clients)
        {
            await client.DisposeAsync();
        }
    }
}

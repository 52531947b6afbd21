using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The silo-wide connection limit, across listeners.</summary>
public sealed class SiloLimitTests
{
    [Fact]
    public async Task Connections_over_the_silo_limit_are_refused_whichever_listener_they_come_to()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.Options.InitializeClientOnDeploy = false;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddProtocolGateway(o => o.MaxConnections = 3);
            silo.AddProtocolListener<EchoGrain>("a", o => o.Port = 0);
            silo.AddProtocolListener<EchoGrain>("b", o => o.Port = 0);
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();

        var admitted = new List<TestClient>();
        foreach (var listener in new[] { "a", "a", "b" })
        {
            var client = await TestClient.ConnectAsync(gateway.GetServer(listener).EndPoints[0]);
            await client.SendAsync("in\n");
            Assert.Equal("in", await client.ReadLineAsync());
            admitted.Add(client);
        }

        await TestClient.AssertDroppedAsync(gateway.GetServer("b").EndPoints[0]);

        Assert.Equal(1, gateway.GetServer("b").RefusedConnections);
        foreach (var client in admitted)
        {
            await client.SendAsync("still\n");
            Assert.Equal("still", await client.ReadLineAsync());
            await client.DisposeAsync();
        }
    }
}

using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>A connection's grain lives exactly as long as its connection.</summary>
[Collection(GatewayCollection.Name)]
public sealed class GrainLifetimeTests(GatewayClusterFixture fixture)
{
    [Fact]
    public async Task An_idle_connection_outlives_the_grain_collection_age_and_still_echoes_on_the_same_activation()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;
        await client.SendAsync("echo one\n");
        Assert.Equal("one", await client.ReadLineAsync());

        // The fixture's collection age is 2 s; collect everything idle for longer than zero, now.
        var management = fixture.Grains.GetGrain<IManagementGrain>(0);
        await management.ForceActivationCollection(TimeSpan.Zero);

        await client.SendAsync("echo two\n");
        Assert.Equal("two", await client.ReadLineAsync());
        Assert.Equal(1, record.Activations);
        Assert.Equal(1, record.Count("CM"));
    }

    [Fact]
    public async Task The_grain_deactivates_after_ConnectionLost()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        var grainId = fixture.ScriptGrain(record).GetGrainId();
        Assert.True(fixture.Cluster.TryGetGrainContext(grainId, out _));

        await client.SendAsync("close\n");
        await client.ReadToEndAsync();
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        await fixture.Cluster.WaitForDeactivationAsync(grainId).WaitAsync(TestTimeouts.Default);
        Assert.False(fixture.Cluster.TryGetGrainContext(grainId, out _));
        await client.DisposeAsync();
    }
}

using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>
/// The gateway's clocks on a fake <see cref="TimeProvider"/> (<see cref="ProtocolGatewayOptions.TimeProviderKey"/>):
/// limits of hours fire when the test moves the clock, over real sockets and a real silo, in milliseconds of wall time.
/// </summary>
[Collection(FakeClockCollection.Name)]
public sealed class FakeClockTests(FakeClockClusterFixture fixture)
{
    [Fact]
    public async Task A_silent_peer_meets_the_first_data_deadline_and_a_quiet_one_the_idle_timeout_when_the_clock_moves()
    {
        await using var server = await fixture.Gateway.CreateServerAsync<GoodbyeGrain>($"fake-clock-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.FirstDataTimeout = TimeSpan.FromHours(1);
            o.IdleTimeout = TimeSpan.FromHours(2);
        });

        await using var silent = await TestClient.ConnectAsync(server.EndPoints[0]);
        var silentRecord = await fixture.Recorder.ForClientAsync(silent.LocalEndPoint);
        await using var quiet = await TestClient.ConnectAsync(server.EndPoints[0]);
        var quietRecord = await fixture.Recorder.ForClientAsync(quiet.LocalEndPoint);
        await quiet.SendAsync("hello\n");
        Assert.Equal("hello", await quiet.ReadLineAsync());
        await fixture.Recorder.WaitUntilAsync(() => silentRecord.Count("CM") == 1);

        // Just inside both limits: nothing happens.
        fixture.Time.Advance(TimeSpan.FromMinutes(59));
        await quiet.SendAsync("still here\n");
        Assert.Equal("still here", await quiet.ReadLineAsync());

        // Past the first-data deadline: the silent one is told why and closed; the quiet one spoke, so it stays.
        fixture.Time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal("-ERR closing: FirstDataTimeout\r\n", Encoding.ASCII.GetString(await silent.ReadToEndAsync()));
        await fixture.Recorder.WaitUntilAsync(() => silentRecord.Count("CL") == 1);
        Assert.Equal(["CM", "CR FirstDataTimeout", "CL"], silentRecord.Events);
        Assert.Equal(0, quietRecord.Count("CR IdleTimeout"));

        // Two hours after its last byte: the idle timeout.
        fixture.Time.Advance(TimeSpan.FromHours(2));
        Assert.Equal("-ERR closing: IdleTimeout\r\n", Encoding.ASCII.GetString(await quiet.ReadToEndAsync()));
        await fixture.Recorder.WaitUntilAsync(() => quietRecord.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.IdleTimeout, Assert.IsType<ConnectionClosedException>(quietRecord.LostException).Reason);
    }

    [Fact]
    public async Task A_peer_that_never_finishes_its_PROXY_header_is_dropped_when_the_header_deadline_passes_on_the_fake_clock()
    {
        await using var server = await fixture.Gateway.CreateServerAsync<GoodbyeGrain>($"fake-proxy-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.ProxyProtocol = true;
            o.ProxyTrustedNetworks = "127.0.0.0/8";
            o.ProxyHeaderTimeout = TimeSpan.FromHours(1);
        });

        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        await client.SendAsync("PROXY TCP4 ");

        // The header's deadline counts from the accept: move the clock only once the server holds the connection.
        await Poll.UntilAsync(() => server.ConnectionCount == 1);
        var dropped = client.AssertDroppedAsync();
        fixture.Time.Advance(TimeSpan.FromMinutes(59));
        Assert.False(dropped.IsCompleted);

        fixture.Time.Advance(TimeSpan.FromMinutes(2));
        await dropped;
    }
}

/// <summary>One silo whose gateway reads a <see cref="FakeTimeProvider"/>; Orleans' own clocks stay real.</summary>
public sealed class FakeClockClusterFixture : IAsyncLifetime
{
    public FakeTimeProvider Time { get; } = new();

    public CallbackRecorder Recorder { get; } = new();

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public ProtocolGateway Gateway => Cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(Recorder);
            silo.Services.AddKeyedSingleton<TimeProvider>(ProtocolGatewayOptions.TimeProviderKey, Time);
            silo.AddProtocolGateway();
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class FakeClockCollection : ICollectionFixture<FakeClockClusterFixture>
{
    public const string Name = "fake-clock";
}

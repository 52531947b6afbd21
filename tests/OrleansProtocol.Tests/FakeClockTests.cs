using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
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
            // Not the subject here: on a clock that jumps, a reply the kernel took may not be counted as sent yet.
            o.MinSendDataRate = null;
        });

        await using var silent = await TestClient.ConnectAsync(server.EndPoints[0]);
        var silentRecord = await fixture.Recorder.ForClientAsync(silent.LocalEndPoint);
        await using var quiet = await TestClient.ConnectAsync(server.EndPoints[0]);
        var quietRecord = await fixture.Recorder.ForClientAsync(quiet.LocalEndPoint);
        await quiet.SendAsync("hello\n");
        Assert.Equal("hello", await quiet.ReadLineAsync());
        await fixture.Recorder.WaitUntilAsync(() => silentRecord.Count("CM") == 1);

        // Just inside both limits: nothing happens.
        fixture.Time.Advance(TimeSpan.FromMinutes(59), server);
        await quiet.SendAsync("still here\n");
        Assert.Equal("still here", await quiet.ReadLineAsync());

        // Past the first-data deadline: the silent one is told why and closed; the quiet one spoke, so it stays.
        fixture.Time.Advance(TimeSpan.FromMinutes(2), server);
        await fixture.Recorder.WaitUntilAsync(() => silentRecord.Count("CL") == 1);
        Assert.Equal("-ERR closing: FirstDataTimeout\r\n", Encoding.ASCII.GetString(await silent.ReadToEndAsync()));
        Assert.Equal(["CM", "CR FirstDataTimeout", "CL"], silentRecord.Events);
        Assert.Equal(0, quietRecord.Count("CR IdleTimeout"));

        // Two hours after its last byte: the idle timeout. (The reply's send may be stamped after the 2 minutes above,
        // when the writer's continuation runs late; the margin covers it.)
        fixture.Time.Advance(TimeSpan.FromHours(2) + TimeSpan.FromMinutes(5), server);
        await fixture.Recorder.WaitUntilAsync(() => quietRecord.Count("CL") == 1);
        Assert.Equal("-ERR closing: IdleTimeout\r\n", Encoding.ASCII.GetString(await quiet.ReadToEndAsync()));
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

        // The deadline's timer fires inside Advance: the drop follows.
        fixture.Time.Advance(TimeSpan.FromMinutes(2));
        await dropped;
    }
    [Fact]
    public async Task An_idle_connection_is_closed_and_one_that_speaks_every_59_minutes_is_not()
    {
        await using var server = await fixture.Gateway.CreateServerAsync<ScriptGrain>($"fake-idle-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.IdleTimeout = TimeSpan.FromHours(1);
            // Not the subject here: on a clock that jumps, a reply the kernel took may not be counted as sent yet.
            o.MinSendDataRate = null;
        });
        await using var idle = await TestClient.ConnectAsync(server.EndPoints[0]);
        var idleRecord = await fixture.Recorder.ForClientAsync(idle.LocalEndPoint);
        await using var busy = await TestClient.ConnectAsync(server.EndPoints[0]);
        var busyRecord = await fixture.Recorder.ForClientAsync(busy.LocalEndPoint);
        await idle.SendAsync("echo once\n");
        Assert.Equal("once", await idle.ReadLineAsync());

        // Just inside the limit, three times over: the busy one stays, the idle one goes once its hour is up.
        for (var i = 0; i < 3; i++)
        {
            await busy.SendAsync($"echo tick {i}\n");
            Assert.True($"tick {i}" == await busy.ReadLineAsync(), $"busy ended: {busyRecord.LostReason} {busyRecord.LostException?.Message}");
            fixture.Time.Advance(TimeSpan.FromMinutes(59), server);
        }

        await fixture.Recorder.WaitUntilAsync(() => idleRecord.Count("CL") == 1);
        Assert.Empty(await idle.ReadToEndAsync());
        Assert.Equal(ConnectionCloseReason.IdleTimeout, idleRecord.LostReason);
        await busy.SendAsync("echo still here\n");
        Assert.True("still here" == await busy.ReadLineAsync(), $"busy ended: {busyRecord.LostReason} {busyRecord.LostException?.Message}");
    }

    [Fact]
    public async Task A_client_that_never_starts_the_TLS_handshake_is_cut_off_when_the_handshake_timeout_passes()
    {
        await using var server = await fixture.Gateway.CreateServerAsync<EchoGrain>($"fake-tls-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.Tls.CertificatePath = fixture.CertificatePath;
            o.Tls.HandshakeTimeout = TimeSpan.FromHours(1);
        });
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        await Poll.UntilAsync(() => server.ConnectionCount == 1);
        var dropped = client.AssertDroppedAsync();
        fixture.Time.Advance(TimeSpan.FromMinutes(59));
        Assert.False(dropped.IsCompleted);

        // The deadline's timer fires inside Advance: the drop follows.
        fixture.Time.Advance(TimeSpan.FromMinutes(2));
        await dropped;
    }

    [Fact]
    public async Task A_slow_ConnectionMade_is_resent_after_five_seconds_and_still_runs_once_and_serves_the_client()
    {
        SlowOpeningGrain.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await fixture.Gateway.CreateServerAsync<SlowOpeningGrain>($"slow-open-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.MinSendDataRate = null;
        });

        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        await client.SendAsync("hello\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CM") == 1);

        // Past the resend: a second ConnectionMade goes out and queues behind the first in the grain.
        fixture.Time.Advance(GrainSessionResendAfter + TimeSpan.FromSeconds(1), server);
        await fixture.Logs.WaitForAsync(m => m.Contains("did not answer ConnectionMade") && m.Contains(record.Connection.ConnectionId));
        fixture.Time.Advance(GrainSessionResendAfter + TimeSpan.FromSeconds(1), server);
        SlowOpeningGrain.Gate.SetResult();

        // The resend finds the grain holding the connection: the first answer counts; the protocol opened it once.
        Assert.Equal("hello", await client.ReadLineAsync());
        await client.SendAsync("again\n");
        Assert.Equal("again", await client.ReadLineAsync());
        Assert.Equal(1, record.Count("CM"));
    }

    private static readonly TimeSpan GrainSessionResendAfter = TimeSpan.FromSeconds(5);
}

/// <summary>One silo whose gateway reads a <see cref="FakeTimeProvider"/>; Orleans' own clocks stay real.</summary>
public sealed class FakeClockClusterFixture : IAsyncLifetime
{
    public FakeTimeProvider Time { get; } = new();

    public string CertificatePath { get; } = TestCertificates.CreatePfx();

    public CallbackRecorder Recorder { get; } = new();

    /// <summary>The gateway's log lines (Information and up).</summary>
    public CapturingLoggerProvider Logs { get; } = new();

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public ProtocolGateway Gateway => Cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(Recorder);
            silo.Services.AddLogging(logging => logging.AddProvider(Logs));
            silo.Services.AddKeyedSingleton<TimeProvider>(ProtocolGatewayOptions.TimeProviderKey, Time);
            silo.AddProtocolGateway();
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        File.Delete(CertificatePath);
    }
}

[CollectionDefinition(Name)]
public sealed class FakeClockCollection : ICollectionFixture<FakeClockClusterFixture>
{
    public const string Name = "fake-clock";
}

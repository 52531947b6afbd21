using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// A one-silo in-process cluster with a gateway serving every test protocol on its own ephemeral port. Shared by the
/// tests of the "gateway" collection: a cluster takes seconds to start.
/// </summary>
public sealed class GatewayClusterFixture : IAsyncLifetime
{
    public CallbackRecorder Recorder { get; } = new();

    /// <summary>Collects one of the gateway's instruments from the silo's meter factory, from now on.</summary>
    public Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<T> Collect<T>(string instrument)
        where T : struct =>
        new(Silo.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), OrleansProtocol.Gateway.Diagnostics.GatewayMetrics.MeterName, instrument);

    /// <summary>
    /// A healthy client's round trips on the echo listener until <paramref name="until"/> completes; every one must
    /// succeed (the server stays responsive while a test abuses it). Returns how many were made.
    /// </summary>
    public async Task<int> HealthyClientAsync(Task until)
    {
        await using var healthy = await TestClient.ConnectAsync(EndPoint("echo"));
        var rounds = 0;
        do
        {
            await healthy.SendAsync($"healthy {rounds}\n");
            Assert.Equal($"healthy {rounds}", await healthy.ReadLineAsync());
            rounds++;
        }
        while (!until.IsCompleted);

        await until;
        return rounds;
    }

    /// <summary>The silo's log entries: the gateway's from Trace up, everything else's from Information up.</summary>
    public CapturingLoggerProvider Logs { get; } = new(LogLevel.Trace);

    /// <summary>The TLS listeners' certificate, a self-signed PFX made for this run.</summary>
    public string CertificatePath { get; } = TestCertificates.CreatePfx();

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public IServiceProvider Silo => Cluster.Silos[0].ServiceProvider;

    public IGrainFactory Grains => Silo.GetRequiredService<IGrainFactory>();

    public ProtocolGateway Gateway => Silo.GetRequiredService<ProtocolGateway>();

    public EndPoint EndPoint(string listener) =>
        Silo.GetRequiredService<ProtocolGateway>().GetServer(listener).EndPoints[0];

    public DatagramEndpoint Udp(string name) => Gateway.DatagramEndpoints.Single(e => e.Name == name);

    /// <summary>Connects a client to the scripted test protocol and finds the record its grain keeps.</summary>
    public async Task<(TestClient Client, ConnectionRecord Record)> ConnectScriptAsync()
    {
        var client = await TestClient.ConnectAsync(EndPoint("script"));
        return (client, await Recorder.ForClientAsync(client.LocalEndPoint));
    }

    /// <summary>The grain serving a scripted connection, to act on it from outside any callback.</summary>
    public IScriptGrain ScriptGrain(ConnectionRecord record) => Grains.GetGrain<IScriptGrain>(record.Connection.ConnectionId);

    /// <summary>The gateway's side of a live connection, for assertions on its buffers.</summary>
    internal Gateway.Connections.GatewayConnection? TryGetGatewayConnection(string connectionId) =>
        Silo.GetRequiredService<ProtocolGateway>().Servers
            .SelectMany(s => s.Connections)
            .FirstOrDefault(c => c.Id == connectionId);

    public static void AddTestListeners(ISiloBuilder silo, string certificatePath)
    {
        silo.AddDatagramEndpoint<UdpCounterGrain>("udp-per-peer", o => o.Port = 0);
        silo.AddDatagramEndpoint<UdpCounterGrain>("udp-shared", o =>
        {
            o.Port = 0;
            o.Mode = DatagramGrainMode.PerEndpoint;
        });
        silo.AddDatagramEndpoint<UdpSlowGrain>("udp-slow", o =>
        {
            o.Port = 0;
            o.Mode = DatagramGrainMode.PerEndpoint;
            o.MaxQueuedDatagrams = 8;
            o.MaxDatagramsPerCall = 4;
        });
        silo.AddProtocolListener<EchoGrain>("tls-echo", o =>
        {
            o.Port = 0;
            o.Tls.CertificatePath = certificatePath;
        });
        silo.AddProtocolListener<ScriptGrain>("tls-script", o =>
        {
            o.Port = 0;
            o.Tls.CertificatePath = certificatePath;
        });
        silo.AddProtocolListener<EchoGrain>("echo", o => o.Port = 0);
        silo.AddProtocolListener<ScriptGrain>("script", o => o.Port = 0);
        silo.AddProtocolListener<ByeGrain>("bye", o => o.Port = 0);
        silo.AddProtocolListener<WriteThenUpgradeGrain>("write-then-upgrade", o =>
        {
            o.Port = 0;
            o.MaxWriteBufferSize = 64 * 1024 * 1024;
        });
        silo.AddProtocolListener<HalfOpenEchoGrain>("half-open-echo", o => o.Port = 0);
        silo.AddProtocolListener<StringReceiverGrain>("strings", o => o.Port = 0);
        silo.AddProtocolListener<LoopGrain>("loop", o => o.Port = 0);
        silo.AddProtocolListener<LineUpgradeGrain>("upgrade", o => o.Port = 0);
        silo.AddProtocolListener<FramedStringReceiverGrain>("framed-strings", o =>
        {
            o.Port = 0;
            o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, BigEndian = false, MaxFrameSize = 99_999 };
        });
        silo.AddProtocolListener<FrameEchoGrain>("frames-be2", o =>
        {
            o.Port = 0;
            o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 2, MaxFrameSize = 1000 };
        });
        silo.AddProtocolListener<FrameEchoGrain>("frames-line", o =>
        {
            o.Port = 0;
            o.Framing = new FramingOptions { Kind = FramingKind.Line, MaxFrameSize = 100 };
        });
    }

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(Recorder);
            silo.Services.AddSingleton<ILoggerProvider>(Logs);
            silo.Services.AddLogging(logging => logging
                .AddFilter<CapturingLoggerProvider>(null, LogLevel.Information)
                .AddFilter<CapturingLoggerProvider>("OrleansProtocol", LogLevel.Trace));

            // Collect idle grains quickly, so tests show connection grains are exempt while their connection lives.
            silo.Services.Configure<GrainCollectionOptions>(o =>
            {
                o.CollectionQuantum = TimeSpan.FromSeconds(1);
                o.CollectionAge = TimeSpan.FromSeconds(2);
            });
            silo.AddProtocolGateway(o => o.DrainTimeout = TimeSpan.FromSeconds(5));
            AddTestListeners(silo, CertificatePath);
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
public sealed class GatewayCollection : ICollectionFixture<GatewayClusterFixture>
{
    public const string Name = "gateway";
}

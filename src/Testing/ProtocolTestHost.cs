using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using OrleansProtocol.Gateway;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Testing;

/// <summary>
/// A one-silo Orleans cluster in this process serving one protocol, for a protocol's tests: clients connect in memory
/// (<see cref="Connect"/>) or over a loopback socket (<see cref="ConnectSocketAsync"/>), every callback the grain
/// receives is recorded (<see cref="ProtocolTestClient.Callbacks"/>), and the gateway's clocks and the grains' timers
/// run on <see cref="Time"/>, a fake clock the test moves.
/// </summary>
/// <remarks>
/// A silo takes a second or two to start: for many tests, share one host through a fixture (xunit's
/// <c>IClassFixture</c>) and give each test its own clients.
/// </remarks>
/// <example>
/// <code>
/// await using var host = await ProtocolTestHost.StartAsync&lt;StringReceiverGrain&gt;();
/// await using var client = host.Connect();
/// await client.WriteAsync([11, 0, 0, 0, .. "hello world"u8]);
/// Assert.Equal([2, 0, 0, 0, .. "ok"u8], await client.ReadExactlyAsync(6));
/// </code>
/// </example>
public sealed class ProtocolTestHost : IAsyncDisposable
{
    private const string ListenerName = "test";

    private readonly ConcurrentDictionary<EndPoint, TaskCompletionSource<AcceptedConnection>> _accepted = new();
    private readonly List<ProtocolTestClient> _clients = [];
    private readonly Func<Task<ProtocolServer>> _createSocketServer;
    private ProtocolServer? _socketServer;

    private ProtocolTestHost(InProcessTestCluster cluster, FakeTimeProvider time, CallbackLog callbacks, Func<ProtocolGateway, Task<ProtocolServer>> createSocketServer)
    {
        Cluster = cluster;
        Time = time;
        Callbacks = callbacks;
        Gateway = cluster.Silos[0].ServiceProvider.GetRequiredService<ProtocolGateway>();
        Server = Gateway.GetServer(ListenerName);
        Watch(Server);
        _createSocketServer = () => createSocketServer(Gateway);
    }

    /// <summary>The cluster (one silo), for what the kit does not wrap.</summary>
    public InProcessTestCluster Cluster { get; }

    /// <summary>The silo's gateway.</summary>
    public ProtocolGateway Gateway { get; }

    /// <summary>The in-memory server of the protocol (listener <c>test</c>).</summary>
    public ProtocolServer Server { get; }

    /// <summary>
    /// The fake clock of the gateway's clocks (idle, first data, data rates, handshake and PROXY deadlines) and of the
    /// grains' timers (<c>CallLater</c>, <c>CallAt</c>): nothing times out until the test moves it (<see cref="Advance"/>).
    /// The minimum send rate is off in the test host unless the listener's settings turn it on.
    /// </summary>
    public FakeTimeProvider Time { get; }

    /// <summary>
    /// Moves <see cref="Time"/> by <paramref name="by"/>, then checks every connection's clocks at the new time, as
    /// the gateway's heartbeat would on its next tick: a limit that has passed has taken effect (its close is under
    /// way) when this returns, and grain timers due by then have been scheduled.
    /// </summary>
    public void Advance(TimeSpan by)
    {
        Time.Advance(by);
        Server.CheckClocks();
        _socketServer?.CheckClocks();
    }

    /// <summary>Every callback each connection's grain received, in order.</summary>
    public CallbackLog Callbacks { get; }

    /// <summary>The silo's grain factory, to reach other grains or a connection by id (<c>IProtocolConnection</c>).</summary>
    public IGrainFactory Grains => Cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>();

    /// <summary>
    /// Starts the silo serving <typeparamref name="TGrain"/>.
    /// </summary>
    /// <param name="configureListener">The listener's settings (framing, limits, TLS...), as in <c>AddProtocolListener</c>.</param>
    /// <param name="configureSilo">Further silo configuration: services the grains need, more listeners.</param>
    public static async Task<ProtocolTestHost> StartAsync<TGrain>(
        Action<ProtocolListenerOptions>? configureListener = null,
        Action<ISiloBuilder>? configureSilo = null)
        where TGrain : IProtocolGrain
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var callbacks = new CallbackLog();
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddKeyedSingleton<TimeProvider>(ProtocolGatewayOptions.TimeProviderKey, time);
            silo.Services.AddKeyedSingleton<TimeProvider>(TimeProviderNames.Grains, time);
            silo.AddIncomingGrainCallFilter(new CallbackRecordingFilter(callbacks));
            silo.AddProtocolGateway();
            silo.AddProtocolListener<TGrain>(ListenerName, o =>
            {
                // Off unless the test sets it: on a clock the test moves in jumps, a reply the client has read may not
                // yet be counted as sent, and would look like a stalled peer.
                o.MinSendDataRate = null;
                configureListener?.Invoke(o);
                o.InMemory = true;
            });
            configureSilo?.Invoke(silo);
        });
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return new ProtocolTestHost(cluster, time, callbacks, gateway => gateway.CreateServerAsync<TGrain>($"{ListenerName}-socket", o =>
        {
            o.MinSendDataRate = null;
            configureListener?.Invoke(o);
            o.InMemory = false;
            o.Host = "127.0.0.1";
            o.Port = 0;
        }));
    }

    /// <summary>Opens an in-memory connection, as a client at <paramref name="from"/> (127.0.0.1 with a port of its own when null).</summary>
    /// <exception cref="ArgumentException">Another open client of this host is at <paramref name="from"/>.</exception>
    public ProtocolTestClient Connect(IPEndPoint? from = null)
    {
        TaskCompletionSource<AcceptedConnection> expected = new(TaskCreationOptions.RunContinuationsAsynchronously);
        if (from is null)
        {
            // Ports of their own: skip any still held by an open client.
            do
            {
                from = NextLoopbackEndPoint();
            }
            while (!_accepted.TryAdd(Normalize(from), expected));
        }
        else if (!_accepted.TryAdd(Normalize(from), expected))
        {
            // The client is matched to its connection by its address: two at one address would be confused.
            throw new ArgumentException($"Another open client is already at {from}; close it first or pick another port.", nameof(from));
        }

        var accepted = expected.Task;
        var client = new ProtocolTestClient(this, Server.ConnectInMemory(from), accepted);
        Track(client);
        return client;
    }

    /// <summary>Opens a connection over a real loopback socket (a second listener of the same protocol and settings, bound on first use).</summary>
    public async Task<ProtocolTestClient> ConnectSocketAsync()
    {
        if (_socketServer is null)
        {
            _socketServer = await _createSocketServer();
            Watch(_socketServer);
        }

        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(_socketServer.EndPoints[0]);
        var client = new ProtocolTestClient(this, socket, Expect(socket.LocalEndPoint!));
        Track(client);
        return client;
    }

    /// <summary>
    /// Closes the clients still open, stops the silo (draining, as a silo stop does; the fake clock is moved as far
    /// as the drain needs), and disposes the cluster.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        ProtocolTestClient[] clients;
        lock (_clients)
        {
            clients = [.. _clients];
        }

        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }

        var stopping = Cluster.DisposeAsync().AsTask();
        while (!stopping.IsCompleted)
        {
            // A connection that does not close would hold the drain on a clock that never moves.
            Time.Advance(TimeSpan.FromSeconds(1));
            await Task.WhenAny(stopping, Task.Delay(20));
        }

        await stopping;
    }

    private int _nextPort;

    private IPEndPoint NextLoopbackEndPoint() => new(IPAddress.Loopback, 1024 + (Interlocked.Increment(ref _nextPort) % 60000));

    private Task<AcceptedConnection> Expect(EndPoint client) =>
        _accepted.GetOrAdd(Normalize(client), _ => new TaskCompletionSource<AcceptedConnection>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    private void Watch(ProtocolServer server) => server.ConnectionAccepted += connection =>
    {
        if (connection.Info.RemoteEndPoint is { } remote)
        {
            _accepted.GetOrAdd(Normalize(remote), _ => new TaskCompletionSource<AcceptedConnection>(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult(connection);
        }
    };

    private void Track(ProtocolTestClient client)
    {
        lock (_clients)
        {
            _clients.Add(client);
        }
    }

    internal void Forget(ProtocolTestClient client, EndPoint endPoint)
    {
        lock (_clients)
        {
            _clients.Remove(client);
        }

        _accepted.TryRemove(Normalize(endPoint), out _);
    }

    private static EndPoint Normalize(EndPoint endPoint) =>
        endPoint is IPEndPoint { Address.IsIPv4MappedToIPv6: true } ip ? new IPEndPoint(ip.Address.MapToIPv4(), ip.Port) : endPoint;
}

using System.Collections.Immutable;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Metadata;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway;

/// <summary>
/// The silo's protocol gateway: the owner of every <see cref="ProtocolServer"/> in the silo. It starts the listeners
/// registered with <c>AddProtocolListener</c> once the silo is active, creates servers at run time
/// (<see cref="CreateServerAsync{TGrain}"/>, asyncio's <c>create_server</c>), and on silo stop drains and closes every
/// server — every connection's grain gets its <c>ConnectionLost</c> — before Orleans deactivates grains. The silo
/// lifecycle is the outer nursery.
/// </summary>
public sealed class ProtocolGateway : ILifecycleParticipant<ISiloLifecycle>
{
    private TimeProvider? _time;

    /// <summary>The clock of every connection's deadlines (<see cref="ProtocolGatewayOptions.TimeProviderKey"/>).</summary>
    internal TimeProvider Time => _time ??= _services.GetKeyedService<TimeProvider>(ProtocolGatewayOptions.TimeProviderKey) ?? TimeProvider.System;

    // One stage after Active: starts strictly after Orleans' own Active work and stops strictly before it, while
    // grains and this silo's observers are still reachable.
    private const int LifecycleStage = ServiceLifecycleStage.Active + 1;

    private readonly IServiceProvider _services;
    // Read when first needed, not in the constructor: the host's startup validation must get to report every bad
    // setting at once before anything throws for the first one (Orleans builds the silo, and this, early).
    private readonly Lazy<ProtocolGatewayOptions> _options;
    private readonly Lazy<SiloConnectionBudget> _budget;
    private readonly Lock _lock = new();
    private ImmutableList<ProtocolServer> _servers = [];
    private ProtocolServer? _outbound;
    private TransportObserver? _observerTarget;
    private ITransportObserver? _observer;
    private ImmutableList<DatagramEndpoint> _datagramEndpoints = [];
    private SocketConnectionContextFactory? _socketContexts;
    private readonly CancellationTokenSource _stoppingWatch = new();
    private Task _membershipWatch = Task.CompletedTask;
    private bool _started;
    private bool _stopping;

    /// <summary>Created by dependency injection; register with <c>AddProtocolGateway</c>.</summary>
    public ProtocolGateway(IServiceProvider services, IOptions<ProtocolGatewayOptions> options)
    {
        _services = services;
        _options = new(() => options.Value);
        _budget = new(() => new SiloConnectionBudget(_options.Value.MaxConnections));
    }

    /// <summary>The servers of this silo, from startup and from run time, until they are disposed.</summary>
    public IReadOnlyList<ProtocolServer> Servers => _servers;

    /// <summary>The UDP endpoints of this silo.</summary>
    public IReadOnlyList<DatagramEndpoint> DatagramEndpoints => _datagramEndpoints;

    /// <summary>
    /// Binds a UDP endpoint served by <typeparamref name="TGrain"/> (asyncio <c>create_datagram_endpoint</c>): one grain,
    /// or one per peer. The silo owns it and closes it on stop.
    /// </summary>
    /// <exception cref="InvalidOperationException">The silo is not active, or an endpoint already has that name.</exception>
    public DatagramEndpoint CreateDatagramEndpoint<TGrain>(string name, Action<DatagramEndpointOptions> configure)
        where TGrain : IDatagramGrain
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new DatagramEndpointOptions();
        configure(options);
        var validation = new DatagramEndpointOptionsValidator().Validate(name, options);
        if (validation.Failed)
        {
            throw new OptionsValidationException(name, typeof(DatagramEndpointOptions), validation.Failures);
        }

        return AddDatagramEndpoint(name, typeof(TGrain), options);
    }

    private DatagramEndpoint AddDatagramEndpoint(string name, Type grainClass, DatagramEndpointOptions options)
    {
        var endpoint = new DatagramEndpoint(
            name,
            options,
            _services.GetRequiredService<GrainTypeResolver>().GetGrainType(grainClass),
            _services.GetRequiredService<IGrainFactory>(),
            _services.GetRequiredService<ILocalSiloDetails>().SiloAddress.ToParsableString(),
            _services.GetRequiredService<ILoggerFactory>().CreateLogger<DatagramEndpoint>());
        lock (_lock)
        {
            if (!_started || _stopping)
            {
                throw new InvalidOperationException("Datagram endpoints can be created only while the silo is active.");
            }

            if (_datagramEndpoints.Any(e => e.Name == name))
            {
                throw new InvalidOperationException($"A datagram endpoint is already named '{name}'.");
            }

            endpoint.Start();
            _datagramEndpoints = _datagramEndpoints.Add(endpoint);
        }

        return endpoint;
    }

    /// <summary>True while the silo is active, the gateway is not draining, and every listener accepts connections.</summary>
    public bool IsReady
    {
        get
        {
            lock (_lock)
            {
                return _started && !_stopping && _servers.All(s => s.IsServing);
            }
        }
    }

    /// <summary>Outbound connections currently open from this silo.</summary>
    public int OutboundConnectionCount => _outbound?.ConnectionCount ?? 0;

    /// <summary>The connection with that id on this silo, or null (ids are <c>"{listener}/{guid}"</c>).</summary>
    internal GatewayConnection? FindConnection(string connectionId)
    {
        // Per push: match the listener's name in front of the id in place, rather than cutting it out.
        if (_outbound?.FindConnection(connectionId) is { } outbound)
        {
            return outbound;
        }

        foreach (var server in _servers)
        {
            var name = server.Name;
            if (connectionId.Length > name.Length && connectionId[name.Length] == '/' && connectionId.StartsWith(name, StringComparison.Ordinal))
            {
                return server.FindConnection(connectionId);
            }
        }

        return null;
    }

    /// <summary>Every connection of this silo: each server's and the outbound ones.</summary>
    internal IEnumerable<GatewayConnection> AllConnections =>
        (_outbound is { } outbound ? _servers.Add(outbound) : _servers).SelectMany(s => s.Connections);

    /// <summary>Connections counted against the silo's limit; equals every server's connections plus the outbound ones.</summary>
    internal int BudgetedConnections => _budget.IsValueCreated ? _budget.Value.Open : 0;

    /// <summary>The server named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No server has that name.</exception>
    public ProtocolServer GetServer(string name) =>
        _servers.FirstOrDefault(s => s.Name == name) ?? throw new KeyNotFoundException($"No protocol server is named '{name}'.");

    /// <summary>
    /// Creates, binds and (unless <see cref="ProtocolListenerOptions.StartServing"/> is false) starts a server whose
    /// connections are each served by a new <typeparamref name="TGrain"/> activation (asyncio <c>create_server</c>).
    /// Call from silo code once the silo is active. The silo owns the server: stopping the silo drains it;
    /// disposing it earlier drains it then.
    /// </summary>
    /// <exception cref="InvalidOperationException">The silo is not active, or a server already has that name.</exception>
    /// <exception cref="OptionsValidationException">The options are invalid; the message lists every problem.</exception>
    public Task<ProtocolServer> CreateServerAsync<TGrain>(string name, Action<ProtocolListenerOptions> configure, CancellationToken cancellationToken = default)
        where TGrain : IProtocolGrain =>
        CreateServerOnClockAsync<TGrain>(name, configure, time: null, cancellationToken);

    /// <summary>As the public overload, with the server's clocks on <paramref name="time"/> instead of the gateway's (tests).</summary>
    internal Task<ProtocolServer> CreateServerOnClockAsync<TGrain>(string name, Action<ProtocolListenerOptions> configure, TimeProvider? time, CancellationToken cancellationToken = default)
        where TGrain : IProtocolGrain
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new ProtocolListenerOptions();
        configure(options);
        var validation = new ProtocolListenerOptionsValidator().Validate(name, options);
        if (validation.Failed)
        {
            throw new OptionsValidationException(name, typeof(ProtocolListenerOptions), validation.Failures);
        }

        lock (_lock)
        {
            if (!_started || _stopping)
            {
                throw new InvalidOperationException("Servers can be created only while the silo is active.");
            }
        }

        return AddServerAsync(name, typeof(TGrain), options, cancellationToken, time);
    }

    /// <summary>
    /// Opens an outbound connection served by a new grain (asyncio <c>create_connection</c>); returns once the
    /// grain's <c>ConnectionMade</c> has run. Grains and external clients call
    /// <c>IGrainFactory.CreateConnectionAsync&lt;TGrain&gt;</c>, which lands here.
    /// </summary>
    /// <exception cref="ProtocolConnectException">Refused, unreachable or timed out; no grain or socket is left behind.</exception>
    /// <param name="request">Where to connect and which protocol serves the connection.</param>
    /// <param name="validateServerCertificate">With <see cref="ConnectRequest.Tls"/>: decides whether to trust the server's certificate (default: the operating system's validation).</param>
    /// <param name="cancellationToken">Cancels the connect.</param>
    public async Task<ConnectionInfo> ConnectAsync(
        ConnectRequest request,
        RemoteCertificateValidationCallback? validateServerCertificate = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var grainClass = Type.GetType(request.ProtocolClass, throwOnError: false)
            ?? throw new ArgumentException($"Protocol class '{request.ProtocolClass}' is not known to this silo.", nameof(request));
        // The peer is a server this side chose to call: it may rightly stay silent, until spoken to or for good (a
        // subscription), as asyncio's client connections may. The data rates and the write-buffer cap still apply.
        var options = new ProtocolListenerOptions
        {
            Framing = FramingOptions.From(request.Framing),
            FirstDataTimeout = Timeout.InfiniteTimeSpan,
            IdleTimeout = Timeout.InfiniteTimeSpan,
        };
        var validation = new ProtocolListenerOptionsValidator().Validate("outbound", options);
        if (validation.Failed)
        {
            throw new ArgumentException(validation.FailureMessage, nameof(request));
        }

        ProtocolServer outbound;
        SocketConnectionContextFactory socketContexts;
        lock (_lock)
        {
            if (!_started || _stopping || _outbound is null || _socketContexts is null)
            {
                throw new InvalidOperationException("Connections can be opened only while the silo is active.");
            }

            outbound = _outbound;
            socketContexts = _socketContexts;
        }

        var socket = request.UnixSocketPath is null
            ? new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(request.ConnectTimeout);
            try
            {
                await (request.UnixSocketPath is { } path
                    ? socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token)
                    : socket.ConnectAsync(request.Host, request.Port, timeout.Token));
            }
            catch (SocketException ex)
            {
                throw new ProtocolConnectException($"Could not connect to {request.Target}: {ex.SocketErrorCode} ({ex.Message}).", ex.SocketErrorCode);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new ProtocolConnectException($"Could not connect to {request.Target}: no answer within {request.ConnectTimeout}.", SocketError.TimedOut);
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var listener = new ListenerContext(
            $"outbound:{request.Target}",
            _services.GetRequiredService<GrainTypeResolver>().GetGrainType(grainClass),
            options,
            _services.GetRequiredService<IGrainFactory>(),
            _observer!,
            Siting(ConnectionPlacement.Local),
            _services.GetRequiredService<GatewayMetrics>(),
            Time,
            _services.GetRequiredService<ILoggerFactory>().CreateLogger<GatewayConnection>());
        var connection = new GatewayConnection(socketContexts.Create(socket), listener);
        if (request.Tls is { } tls)
        {
            connection.UseClientTls(
                new SslClientAuthenticationOptions
                {
                    TargetHost = tls.ServerName,
                    RemoteCertificateValidationCallback = validateServerCertificate
                        ?? (tls.AllowUntrustedCertificate ? (_, _, _, _) => true : null),
                },
                request.ConnectTimeout);
        }

        outbound.Adopt(connection);
        if (!await connection.Made)
        {
            throw new ProtocolConnectException(
                connection.HandshakeError is { } handshake
                    ? $"Connected to {request.Target}, but {handshake}"
                    : $"Connected to {request.Target}, but the connection ended before its grain's ConnectionMade completed.",
                SocketError.ConnectionAborted);
        }

        return connection.Info;
    }

    private ConnectionSiting Siting(ConnectionPlacement placement) => new(
        placement,
        _services.GetRequiredService<ILocalSiloDetails>().SiloAddress,
        _services.GetRequiredService<IClusterMembershipService>());

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(ProtocolGateway), LifecycleStage, StartAsync, StopAsync);

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        var loggerFactory = _services.GetRequiredService<ILoggerFactory>();

        // One observer for the silo (outside any grain turn, so Orleans registers it with the hosted client), held
        // strongly until the gateway stops: a connection costs no observer registration of its own.
        _observerTarget = new TransportObserver(FindConnection);
        _observer = _services.GetRequiredService<IGrainFactory>().CreateObjectReference<ITransportObserver>(_observerTarget);
        _services.GetRequiredService<GatewayMetrics>().ObserverReference(1);
        lock (_lock)
        {
            _started = true;

            // Outbound connections live in a server of their own that never listens: tracked and drained the same way.
            _outbound = new ProtocolServer(
                "outbound", new ProtocolListenerOptions(), default, _services.GetRequiredService<IGrainFactory>(),
                loggerFactory, _options.Value.DrainTimeout, static _ => { }, Siting(ConnectionPlacement.Local), _services.GetRequiredService<GatewayMetrics>(), _budget.Value, _observer, Time);
            _outbound.StartClocks();
            _socketContexts = new SocketConnectionContextFactory(
                new SocketConnectionFactoryOptions { WaitForDataBeforeAllocatingBuffer = true, UnsafePreferInlineScheduling = true },
                loggerFactory.CreateLogger<SocketConnectionContextFactory>());
        }

        _membershipWatch = WatchMembershipAsync(_stoppingWatch.Token);
        var listenerOptions = _services.GetRequiredService<IOptionsMonitor<ProtocolListenerOptions>>();
        foreach (var registration in _services.GetServices<ProtocolListenerRegistration>())
        {
            await AddServerAsync(registration.Name, registration.GrainClass, listenerOptions.Get(registration.Name), cancellationToken);
        }

        var datagramOptions = _services.GetRequiredService<IOptionsMonitor<DatagramEndpointOptions>>();
        foreach (var registration in _services.GetServices<DatagramEndpointRegistration>())
        {
            AddDatagramEndpoint(registration.Name, registration.GrainClass, datagramOptions.Get(registration.Name));
        }
    }

    private async Task<ProtocolServer> AddServerAsync(string name, Type grainClass, ProtocolListenerOptions options, CancellationToken cancellationToken, TimeProvider? time = null)
    {
        var server = new ProtocolServer(
            name,
            options,
            _services.GetRequiredService<GrainTypeResolver>().GetGrainType(grainClass),
            _services.GetRequiredService<IGrainFactory>(),
            _services.GetRequiredService<ILoggerFactory>(),
            _options.Value.DrainTimeout,
            Forget,
            Siting(options.Placement),
            _services.GetRequiredService<GatewayMetrics>(),
            _budget.Value,
            _observer ?? throw new InvalidOperationException("Servers can be created only while the silo is active."),
            time ?? Time);
        lock (_lock)
        {
            if (_servers.Any(s => s.Name == name))
            {
                throw new InvalidOperationException($"A protocol server is already named '{name}'; server names must be unique.");
            }

            _servers = _servers.Add(server);
        }

        try
        {
            await server.BindAsync(cancellationToken);
        }
        catch
        {
            lock (_lock)
            {
                _servers = _servers.Remove(server);
            }

            throw;
        }

        _ = ForgetWhenClosedAsync(server);
        return server;
    }

    // A closed server stays until its last connection ends: the silo's stop must still drain it.
    private async Task ForgetWhenClosedAsync(ProtocolServer server)
    {
        await server.WaitClosed();
        Forget(server);
    }

    private void Forget(ProtocolServer server)
    {
        lock (_lock)
        {
            _servers = _servers.Remove(server);
        }
    }

    /// <summary>
    /// When membership declares a silo dead, connections whose grains lived there are aborted at once (their grains are
    /// gone; the next callback would only find a fresh activation), instead of waiting for the client's next bytes.
    /// A silo seen stopping gracefully first is different: its grains moved with their connections or closed them, and
    /// its death can reach this gateway before a moved grain's notice does, so those connections ask their grains.
    /// </summary>
    private async Task WatchMembershipAsync(CancellationToken cancellation)
    {
        var membership = _services.GetRequiredService<IClusterMembershipService>();
        var logger = _services.GetRequiredService<ILoggerFactory>().CreateLogger<ProtocolGateway>();
        var stopping = new HashSet<SiloAddress>();
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(cancellation))
            {
                stopping.UnionWith(snapshot.Members.Values.Where(m => m.Status is SiloStatus.ShuttingDown or SiloStatus.Stopping).Select(m => m.SiloAddress));
                var dead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead).ToDictionary(m => m.SiloAddress.ToString(), m => stopping.Contains(m.SiloAddress));
                stopping.RemoveWhere(s => !snapshot.Members.ContainsKey(s));
                var servers = _outbound is { } outbound ? _servers.Add(outbound) : _servers;
                var located = new Dictionary<string, int>();
                foreach (var connection in servers.SelectMany(s => s.Connections))
                {
                    if (connection.GrainSilo is not { } silo || !dead.TryGetValue(silo, out var graceful))
                    {
                        continue;
                    }

                    if (graceful)
                    {
                        GatewayLog.LocatingGrain(logger, connection.Id, silo);
                        located[silo] = located.GetValueOrDefault(silo) + 1;
                        connection.LocateGrain();
                    }
                    else
                    {
                        logger.LogWarning("Connection {ConnectionId}: the silo holding its grain ({Silo}) died; aborting.", connection.Id, silo);
                        connection.AbortGrainLost($"The silo holding the connection's grain ({silo}) died.");
                    }
                }

                foreach (var (silo, count) in located)
                {
                    GatewayLog.GrainSiloStopped(logger, silo, count);
                }
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
    }

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        _stoppingWatch.Cancel();
        await _membershipWatch;
        lock (_lock)
        {
            _stopping = true;
        }

        var servers = _outbound is { } outbound ? _servers.Add(outbound) : _servers;
        await Task.WhenAll(servers
            .Select(s => s.ShutdownAsync(ConnectionCloseReason.ServerShutdown, _options.Value.DrainTimeout, cancellationToken))
            .Concat(_datagramEndpoints.Select(e => e.StopAsync()))
            .Append(MoveGrainsAwayAsync(cancellationToken)));
        _socketContexts?.Dispose();
        if (_observer is { } observer)
        {
            _services.GetRequiredService<IGrainFactory>().DeleteObjectReference<ITransportObserver>(observer);
            _services.GetRequiredService<GatewayMetrics>().ObserverReference(-1);
            _observer = null;
            _observerTarget = null;
        }
    }

    /// <summary>
    /// The silo stops while some of its connection grains serve sockets on other silos: each protocol that can move
    /// goes to the silo of its socket with its connection (grain migration), before Orleans deactivates what is left.
    /// The others close cleanly when they are deactivated. Waits up to the drain timeout for the moves.
    /// </summary>
    private async Task MoveGrainsAwayAsync(CancellationToken cancellationToken)
    {
        if (_services.GetService<OrleansProtocol.Diagnostics.ConnectionGrainCounters>() is not { } counters
            || counters.GrainsAwayFromSocket is not { Count: > 0 } away)
        {
            return;
        }

        var grains = _services.GetRequiredService<IGrainFactory>();
        var moving = await Task.WhenAll(away.Select(async grain =>
        {
            try
            {
                return await grains.GetGrain<IProtocolGrain>(grain.Grain).LeaveSilo(grain.GatewaySilo) ? grain.Left.Task : null;
            }
            catch (Exception ex)
            {
                _services.GetRequiredService<ILoggerFactory>().CreateLogger<ProtocolGateway>()
                    .LogWarning(ex, "Connection grain {Grain} could not be asked to move; it closes when the silo deactivates it.", grain.Grain);
                return null;
            }
        }));

        var moves = moving.OfType<Task>().ToArray();
        try
        {
            await Task.WhenAll(moves).WaitAsync(_options.Value.DrainTimeout, Time, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
        }

        GatewayLog.GrainsMovedAway(_services.GetRequiredService<ILoggerFactory>().CreateLogger<ProtocolGateway>(), moves.Count(t => t.IsCompleted), moving.Length - moves.Length);
    }
}

/// <summary>A listener added with <c>AddProtocolListener</c>: its name and the grain class serving it.</summary>
internal sealed record ProtocolListenerRegistration(string Name, Type GrainClass);

/// <summary>A UDP endpoint added with <c>AddDatagramEndpoint</c>.</summary>
internal sealed record DatagramEndpointRegistration(string Name, Type GrainClass);

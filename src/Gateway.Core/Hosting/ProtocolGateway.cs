using System.Collections.Immutable;
using System.Net.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Metadata;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Gateway.Groups;
using OrleansProtocol.Wire;

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
    // One stage after Active: starts strictly after Orleans' own Active work and stops strictly before it, while
    // grains and this silo's observers are still reachable.
    private const int LifecycleStage = ServiceLifecycleStage.Active + 1;

    // The gateway's life: created, active (servers may be added), stopping. Moved by the silo's lifecycle only.
    private const int Created = 0;
    private const int Active = 1;
    private const int Stopping = 2;

    private readonly IServiceProvider _services;
    private readonly IGrainFactory _grainFactory;
    private readonly GrainTypeResolver _grainTypes;
    private readonly ILoggerFactory _loggerFactory;
    private readonly GatewayMetrics _metrics;
    private readonly SiloAddress _localSilo;
    private readonly IClusterMembershipService _membership;

    // Read when first needed, not in the constructor: the host's startup validation must get to report every bad
    // setting at once before anything throws for the first one (Orleans builds the silo, and this, early).
    private readonly Lazy<ProtocolGatewayOptions> _options;
    private readonly Lazy<SiloConnectionBudget> _budget;
    private readonly CancellationTokenSource _stoppingWatch = new();

    // Swapped whole (ImmutableInterlocked), so readers — a push finding its connection, the health check — take no lock.
    private ImmutableList<ProtocolServer> _servers = [];
    private ImmutableList<DatagramEndpoint> _datagramEndpoints = [];
    private volatile int _state;
    private OutboundConnector? _connector;
    private ITransportObserver? _observer;
    private GatewayServices? _shared;
    private TransportObserver? _observerTarget;
    private Task _membershipWatch = Task.CompletedTask;
    private TimeProvider? _time;

    /// <summary>Created by dependency injection; register with <c>AddProtocolGateway</c>.</summary>
    public ProtocolGateway(
        IServiceProvider services,
        IOptions<ProtocolGatewayOptions> options,
        IGrainFactory grainFactory,
        GrainTypeResolver grainTypes,
        ILoggerFactory loggerFactory,
        GatewayMetrics metrics,
        ILocalSiloDetails localSilo,
        IClusterMembershipService membership)
    {
        _services = services;
        _grainFactory = grainFactory;
        _grainTypes = grainTypes;
        _loggerFactory = loggerFactory;
        _metrics = metrics;
        _localSilo = localSilo.SiloAddress;
        _membership = membership;
        _options = new(() => options.Value);
        _budget = new(() => new SiloConnectionBudget(_options.Value.MaxConnections));
        Groups = new ConnectionGroups(metrics, loggerFactory.CreateLogger<ConnectionGroups>());
    }

    /// <summary>The groups this silo's connections are in, and their delivery.</summary>
    internal ConnectionGroups Groups { get; }

    /// <summary>The clock of every connection's deadlines (<see cref="ProtocolGatewayOptions.TimeProviderKey"/>).</summary>
    internal TimeProvider Time => _time ??= _services.GetKeyedService<TimeProvider>(ProtocolGatewayOptions.TimeProviderKey) ?? TimeProvider.System;

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
        if (_state != Active)
        {
            throw new InvalidOperationException("Datagram endpoints can be created only while the silo is active.");
        }

        var endpoint = new DatagramEndpoint(
            name, options, _grainTypes.GetGrainType(grainClass), _grainFactory, _localSilo.ToParsableString(), _loggerFactory.CreateLogger<DatagramEndpoint>());
        if (!ImmutableInterlocked.Update(ref _datagramEndpoints, static (list, e) => list.Any(x => x.Name == e.Name) ? list : list.Add(e), endpoint))
        {
            throw new InvalidOperationException($"A datagram endpoint is already named '{name}'.");
        }

        endpoint.Start();
        return endpoint;
    }

    /// <summary>True while the silo is active, the gateway is not draining, and every listener accepts connections.</summary>
    public bool IsReady => _state == Active && _servers.All(s => s.IsServing);

    /// <summary>Outbound connections currently open from this silo.</summary>
    public int OutboundConnectionCount => _connector?.Server.ConnectionCount ?? 0;

    /// <summary>The connection with that id on this silo, or null (ids are <c>"{listener}/{guid}"</c>).</summary>
    internal GatewayConnection? FindConnection(string connectionId)
    {
        // Per push: match the listener's name in front of the id in place, rather than cutting it out.
        if (_connector?.Server.FindConnection(connectionId) is { } outbound)
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
        AllServers.SelectMany(s => s.Connections);

    // The servers with the outbound one, which never listens.
    private ImmutableList<ProtocolServer> AllServers => _connector is { } connector ? _servers.Add(connector.Server) : _servers;

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

        if (_state != Active)
        {
            throw new InvalidOperationException("Servers can be created only while the silo is active.");
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

        if (_state != Active || _connector is not { } connector)
        {
            throw new InvalidOperationException("Connections can be opened only while the silo is active.");
        }

        return await connector.ConnectAsync(request, grainClass, options, validateServerCertificate, cancellationToken);
    }

    private ConnectionSiting Siting(ConnectionPlacement placement) => new(placement, _localSilo, _membership);

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(ProtocolGateway), LifecycleStage, StartAsync, StopAsync);

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        // One observer for the silo (outside any grain turn, so Orleans registers it with the hosted client), held
        // strongly until the gateway stops: a connection costs no observer registration of its own.
        _observerTarget = new TransportObserver(FindConnection);
        _observer = _grainFactory.CreateObjectReference<ITransportObserver>(_observerTarget);
        _metrics.ObserverReference(1);

        _shared = new GatewayServices(_grainFactory, _observer, _metrics, _budget.Value, Groups, Time, _loggerFactory, _options.Value.DrainTimeout);

        // Outbound connections live in a server of their own that never listens: tracked and drained the same way.
        var outbound = new ProtocolServer("outbound", new ProtocolListenerOptions(), default, Siting(ConnectionPlacement.Local), _shared, static _ => { });
        outbound.StartClocks();
        _connector = new OutboundConnector(outbound, _grainTypes, Siting(ConnectionPlacement.Local), _shared);
        _state = Active;

        var watch = new ClusterWatch(_membership, _grainFactory, _loggerFactory.CreateLogger<ProtocolGateway>());
        _membershipWatch = watch.WatchMembershipAsync(() => AllConnections, _stoppingWatch.Token);
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
        var shared = _shared ?? throw new InvalidOperationException("Servers can be created only while the silo is active.");
        var server = new ProtocolServer(
            name, options, _grainTypes.GetGrainType(grainClass), Siting(options.Placement), time is null ? shared : shared with { Time = time }, Forget);
        if (!ImmutableInterlocked.Update(ref _servers, static (list, s) => list.Any(x => x.Name == s.Name) ? list : list.Add(s), server))
        {
            throw new InvalidOperationException($"A protocol server is already named '{name}'; server names must be unique.");
        }

        try
        {
            await server.BindAsync(cancellationToken);
        }
        catch
        {
            Forget(server);
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

    private void Forget(ProtocolServer server) => ImmutableInterlocked.Update(ref _servers, static (list, s) => list.Remove(s), server);

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        _stoppingWatch.Cancel();
        await _membershipWatch;
        _state = Stopping;
        var watch = new ClusterWatch(_membership, _grainFactory, _loggerFactory.CreateLogger<ProtocolGateway>());
        await Task.WhenAll(AllServers
            .Select(s => s.ShutdownAsync(ConnectionCloseReason.ServerShutdown, _options.Value.DrainTimeout, cancellationToken))
            .Concat(_datagramEndpoints.Select(e => e.StopAsync()))
            .Append(watch.MoveGrainsAwayAsync(_services.GetService<OrleansProtocol.Diagnostics.ConnectionGrainCounters>(), _options.Value.DrainTimeout, Time, cancellationToken)));
        _connector?.Dispose();
        if (_observer is { } observer)
        {
            _grainFactory.DeleteObjectReference<ITransportObserver>(observer);
            _metrics.ObserverReference(-1);
            _observer = null;
            _shared = null;
            _observerTarget = null;
        }
    }
}

/// <summary>A listener added with <c>AddProtocolListener</c>: its name and the grain class serving it.</summary>
internal sealed record ProtocolListenerRegistration(string Name, Type GrainClass);

/// <summary>A UDP endpoint added with <c>AddDatagramEndpoint</c>.</summary>
internal sealed record DatagramEndpointRegistration(string Name, Type GrainClass);

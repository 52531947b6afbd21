using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway;

/// <summary>
/// One server of the gateway, serving one protocol grain type on one or more endpoints: asyncio's <c>Server</c>.
/// Sockets come from Kestrel's socket transport; each accepted connection gets its own grain.
/// </summary>
/// <remarks>
/// Created at startup with <c>AddProtocolListener</c> or at run time with
/// <see cref="ProtocolGateway.CreateServerAsync{TGrain}"/>. The silo owns every server: stopping the silo drains and
/// closes them all.
/// </remarks>
public sealed class ProtocolServer : IAsyncDisposable
{
    private readonly ProtocolListenerOptions _options;
    private readonly GrainType _grainType;
    private readonly IGrainFactory _grainFactory;
    private readonly ILoggerFactory _loggerFactory;
    private readonly TimeSpan _drainTimeout;
    private readonly Action<ProtocolServer> _forget;
    private readonly ConnectionSiting _siting;
    private readonly GatewayMetrics _metrics;
    private readonly SiloConnectionBudget _budget;
    private readonly ITransportObserver _observer;
    private readonly ILogger _logger;
    private readonly ILogger _connectionLogger;
    private readonly ConcurrentDictionary<string, GatewayConnection> _connections = new();
    private readonly ConnectionAdmission _admission;
    private Task _heartbeat = Task.CompletedTask;

    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Guards binding, starting and closing (the listeners, the accept loops, the two flags' moves); the flags and the
    // listeners are read without it.
    private readonly Lock _lock = new();
    private volatile List<IConnectionListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private Task _unbound = Task.CompletedTask;
    private TaskCompletionSource? _drained;
    private volatile bool _serving;
    private volatile bool _isClosed;
    private volatile bool _closedForHeartbeat;
    private int _servingForever;
    private ListenerContext? _listener;
    private readonly byte[] _refusalMessage;
    private readonly TimeProvider _time;

    internal ProtocolServer(
        string name,
        ProtocolListenerOptions options,
        GrainType grainType,
        IGrainFactory grainFactory,
        ILoggerFactory loggerFactory,
        TimeSpan drainTimeout,
        Action<ProtocolServer> forget,
        ConnectionSiting siting,
        GatewayMetrics metrics,
        SiloConnectionBudget budget,
        ITransportObserver observer,
        TimeProvider time)
    {
        _time = time;
        _observer = observer;
        _budget = budget;
        _metrics = metrics;
        _forget = forget;
        _siting = siting;
        Name = name;
        _options = options;
        _grainType = grainType;
        _grainFactory = grainFactory;
        _loggerFactory = loggerFactory;
        _drainTimeout = drainTimeout;
        _logger = loggerFactory.CreateLogger<ProtocolServer>();
        _connectionLogger = loggerFactory.CreateLogger<GatewayConnection>();
        _refusalMessage = options.RefusalMessage is { Length: > 0 } text ? System.Text.Encoding.UTF8.GetBytes(text) : [];
        _admission = new ConnectionAdmission(name, options, budget, metrics, _logger, () => _connections.Count);
    }

    /// <summary>The server's name, as registered.</summary>
    public string Name { get; }

    /// <summary>
    /// The bound endpoints, with the real port when 0 was asked for (asyncio <c>server.sockets[i].getsockname()</c>);
    /// empty once the server is closed.
    /// </summary>
    public IReadOnlyList<EndPoint> EndPoints { get; private set; } = [];

    /// <summary>True while the server accepts connections (asyncio <c>is_serving</c>).</summary>
    public bool IsServing => _serving && !_isClosed;

    /// <summary>
    /// Opens a connection to this server in-process (a listener with <see cref="ProtocolListenerOptions.InMemory"/>):
    /// accepted, counted, limited and served exactly as a socket would be.
    /// </summary>
    /// <param name="remoteEndPoint">The client's address as the server sees it (per-address limits, <c>peername</c>); 127.0.0.1 with a port of its own when null.</param>
    /// <exception cref="InvalidOperationException">The listener is not in memory, or the server is closed.</exception>
    public InMemoryConnection ConnectInMemory(IPEndPoint? remoteEndPoint = null)
    {
        if (_listeners.OfType<InMemoryConnectionListener>().FirstOrDefault() is not { } listener)
        {
            throw new InvalidOperationException(_options.InMemory
                ? $"Server '{Name}' is closed."
                : $"Server '{Name}' listens on sockets; set InMemory on its listener options to connect in memory.");
        }

        return listener.Connect(remoteEndPoint) ?? throw new InvalidOperationException($"Server '{Name}' is closed.");
    }

    /// <summary>Number of connections currently open on this server.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Connections refused at accept because a connection limit was reached.</summary>
    public long RefusedConnections => _admission.Refused;

    internal IEnumerable<GatewayConnection> Connections => _connections.Values;

    internal GatewayConnection? FindConnection(string connectionId) => _connections.GetValueOrDefault(connectionId);

    /// <summary>
    /// Starts accepting connections (asyncio <c>start_serving</c>); idempotent. A server created with
    /// <see cref="ProtocolListenerOptions.StartServing"/> false is bound and listening, and connections wait in the
    /// backlog until this is called.
    /// </summary>
    /// <exception cref="InvalidOperationException">The server is closed.</exception>
    public void StartServing()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_isClosed, this);
            if (_serving)
            {
                return;
            }

            _serving = true;
            foreach (var listener in _listeners)
            {
                _acceptLoops.Add(AcceptLoopAsync(listener));
            }
        }
    }

    /// <summary>
    /// Starts serving if needed and waits until the server is closed (asyncio <c>serve_forever</c>). Cancelling
    /// <paramref name="cancellationToken"/> closes the server, waits for it to be closed, and throws.
    /// </summary>
    /// <exception cref="InvalidOperationException">The server is closed, or <c>ServeForever</c> is already running.</exception>
    public async Task ServeForever(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _servingForever, 1) == 1)
        {
            throw new InvalidOperationException($"Server '{Name}' is already being served forever.");
        }

        try
        {
            if (_isClosed)
            {
                throw new InvalidOperationException($"Server '{Name}' is closed.");
            }

            StartServing();
            try
            {
                await _closed.Task.WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Close();
                await WaitClosed();
                throw;
            }
        }
        finally
        {
            Volatile.Write(ref _servingForever, 0);
        }
    }

    /// <summary>
    /// Stops accepting: the listening sockets are closed (asyncio <c>close</c>). Existing connections go on; use
    /// <see cref="CloseClients()"/> or <see cref="AbortClients()"/> to end them. Idempotent.
    /// </summary>
    public void Close()
    {
        lock (_lock)
        {
            if (_isClosed)
            {
                return;
            }

            _isClosed = true;
            _serving = false;
            EndPoints = [];
            var listeners = _listeners;
            _listeners = [];
            _unbound = UnbindAsync(listeners, _acceptLoops.ToArray());
        }

        _closed.TrySetResult();
    }

    /// <summary>Asks every connection to flush and close (asyncio <c>close_clients</c>); each grain gets <c>ConnectionLost(null)</c>.</summary>
    public void CloseClients() => CloseClients(ConnectionCloseReason.LocalClose, "The server closed its clients.");

    /// <summary>Resets every connection at once, discarding buffered data (asyncio <c>abort_clients</c>).</summary>
    public void AbortClients() => AbortClients(ConnectionCloseReason.LocalAbort, "The server aborted its clients.");

    /// <summary>
    /// Completes when the server is closed <em>and</em> no connection remains (asyncio <c>wait_closed</c>, as of
    /// Python 3.12.1).
    /// </summary>
    public async Task WaitClosed()
    {
        await _closed.Task;
        await _unbound;
        while (true)
        {
            // The signal is in place before the check, and a connection ends by leaving the table before it fires
            // the signal: either the check sees the table empty, or the last connection's end completes the wait.
            var next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var drained = Interlocked.CompareExchange(ref _drained, next, null) ?? next;
            if (_connections.IsEmpty)
            {
                return;
            }

            await drained.Task;
        }
    }

    /// <summary>
    /// Closes the server and drains it: stops accepting, asks every connection to close, waits up to the gateway's
    /// drain timeout, then aborts the rest. Every connection's grain gets its <c>ConnectionLost</c>.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await ShutdownAsync(ConnectionCloseReason.ServerShutdown, _drainTimeout, CancellationToken.None);
        _forget(this);
    }

    internal async Task BindAsync(CancellationToken cancellationToken)
    {
        // Loaded once per server; a bad file fails the server's start, not its first connection.
        _listener = new ListenerContext(
            Name, _grainType, _options, _grainFactory, _observer, _siting, _metrics, _time, _connectionLogger,
            _options.Tls.Enabled ? _options.Tls.LoadCertificate() : null)
        {
            AdmitProxiedClient = _options.ProxyProtocol ? _admission.AdmitProxied : null,
        };
        var transportOptions = new SocketTransportOptions
        {
            Backlog = _options.Backlog,
            NoDelay = _options.NoDelay,
            MaxReadBufferSize = _options.EffectiveMaxReadBufferSize,

            // Kestrel reads only when data is there, so an idle connection holds no receive buffer.
            WaitForDataBeforeAllocatingBuffer = true,

            // The pump's continuation runs on the socket's completion thread instead of after another thread-pool
            // hop. Safe here because the pump never blocks: it copies the bytes out and awaits the grain call.
            UnsafePreferInlineScheduling = true,
        };
        var factory = new SocketTransportFactory(Options.Create(transportOptions), _loggerFactory);
        var listeners = new List<IConnectionListener>();
        try
        {
            if (_options.InMemory)
            {
                listeners.Add(new InMemoryConnectionListener(new IPEndPoint(IPAddress.Loopback, 0), _options.EffectiveMaxReadBufferSize));
            }
            else
            {
                foreach (var endPoint in _options.GetEndPoints())
                {
                    if (endPoint is UnixDomainSocketEndPoint)
                    {
                        RemoveStaleSocketFile(_options.UnixSocketPath!);
                    }

                    listeners.Add(await factory.BindAsync(endPoint, cancellationToken));
                }
            }
        }
        catch
        {
            foreach (var listener in listeners)
            {
                await listener.DisposeAsync();
            }

            throw;
        }

        lock (_lock)
        {
            _listeners = listeners;
            EndPoints = listeners.Select(l => l.EndPoint).ToArray();
        }

        foreach (var listener in listeners)
        {
            GatewayLog.ListenerStarted(_logger, Name, _grainType.ToString(), listener.EndPoint);
        }

        StartClocks();

        if (_options.StartServing)
        {
            StartServing();
        }
    }

    /// <summary>
    /// The nursery's exit: close, ask every connection to close, wait up to <paramref name="drainTimeout"/>, abort
    /// what is left (with a warning naming how many), and wait for every grain to be told.
    /// </summary>
    internal async Task ShutdownAsync(ConnectionCloseReason reason, TimeSpan drainTimeout, CancellationToken cancellationToken)
    {
        _closedForHeartbeat = true;
        Close();
        await _unbound;

        // The deadline counts from here, before the connections are asked to close (not from whenever the wait starts).
        var draining = _time.GetTimestamp();
        CloseClients(reason, "The server is shutting down.");
        var left = drainTimeout - _time.GetElapsedTime(draining);
        if (!await WaitForConnectionsAsync(left > TimeSpan.Zero ? left : TimeSpan.Zero, cancellationToken))
        {
            // Counted by what has not ended: one that just closed may not have left the table yet.
            GatewayLog.DrainIncomplete(_logger, Name, _connections.Values.Count(c => !c.Completion.IsCompleted), drainTimeout);
            AbortClients(reason, "The server is shutting down; the drain timeout passed.");

            // Aborted connections still tell their grains; a grain stuck in a callback cannot hold the silo forever.
            if (!await WaitForConnectionsAsync(TimeSpan.FromSeconds(5), cancellationToken))
            {
                GatewayLog.StopIncomplete(_logger, Name, _connections.Count);
            }
        }
    }

    private void CloseClients(ConnectionCloseReason reason, string detail)
    {
        foreach (var connection in _connections.Values)
        {
            connection.RequestClose(reason, detail);
        }
    }

    private void AbortClients(ConnectionCloseReason reason, string detail)
    {
        foreach (var connection in _connections.Values)
        {
            connection.Abort(reason, detail);
        }
    }

    private async Task<bool> WaitForConnectionsAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await WaitClosed().WaitAsync(timeout, _time, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            return false;
        }
    }

    private async Task UnbindAsync(List<IConnectionListener> listeners, Task[] acceptLoops)
    {
        foreach (var listener in listeners)
        {
            await listener.UnbindAsync();
        }

        await Task.WhenAll(acceptLoops);
        foreach (var listener in listeners)
        {
            GatewayLog.ListenerStopped(_logger, Name, listener.EndPoint);
            await listener.DisposeAsync();
            if (listener.EndPoint is UnixDomainSocketEndPoint)
            {
                // As asyncio's server close: the socket file goes with the listener.
                File.Delete(_options.UnixSocketPath!);
            }
        }
    }

    /// <summary>
    /// A socket file left by a server that did not close would fail the bind. Sockets show as empty files; anything
    /// else at the path is left alone, and the bind reports it.
    /// </summary>
    private static void RemoveStaleSocketFile(string path)
    {
        var file = new FileInfo(path);
        if (file.Exists && file.Length == 0)
        {
            file.Delete();
        }
    }

    private async Task AcceptLoopAsync(IConnectionListener listener)
    {
        // Off the caller's stack: StartServing returns at once.
        await Task.Yield();
        while (true)
        {
            ConnectionContext? context;
            try
            {
                context = await listener.AcceptAsync();
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception ex)
            {
                // Out of file descriptors or memory: back off instead of spinning (trio waits 100 ms, asyncio 1 s).
                GatewayLog.AcceptFailed(_logger, Name, ex);
                await Task.Delay(TimeSpan.FromMilliseconds(100));
                continue;
            }

            if (context is null)
            {
                return;
            }

            if (_admission.Admit(context.RemoteEndPoint, out var counted) is var (_, detail))
            {
                // Closed at once, before any grain exists; existing connections are unaffected.
                _ = ConnectionRefusal.RefuseAsync(context, _refusalMessage, detail);
                continue;
            }

            GatewayConnection connection;
            try
            {
                connection = new GatewayConnection(context, _listener!) { CountedAddress = counted };
            }
            catch (Exception ex)
            {
                _admission.Release(counted);
                GatewayLog.AcceptFailed(_logger, Name, ex);
                await context.DisposeAsync();
                continue;
            }

            Adopt(connection);
        }
    }

    /// <summary>Tracks and runs a connection: it counts for <see cref="WaitClosed"/> and is drained with the server.</summary>
    internal void Adopt(GatewayConnection connection)
    {
        _connections[connection.Id] = connection;
        ConnectionAccepted?.Invoke(new AcceptedConnection(connection));
        _budget.Opened();
        _ = RunConnectionAsync(connection);
    }

    /// <summary>
    /// Raised as each connection is taken on, before its grain is called, on the accepting thread (keep the handler
    /// short). For tools and test kits; protocol code has <c>ConnectionMade</c>.
    /// </summary>
    public event Action<AcceptedConnection>? ConnectionAccepted;

    /// <summary>Open connections counted against client addresses (<see cref="ProtocolListenerOptions.MaxConnectionsPerAddress"/>).</summary>
    internal int CountedAddresses => _admission.CountedAddresses;

    /// <summary>Starts the heartbeat that runs the connections' clocks; the outbound server, which never binds, calls it alone.</summary>
    internal void StartClocks()
    {
        if (ConnectionClock.Limits.HeartbeatPeriod(_options) is { } period)
        {
            _heartbeat = HeartbeatAsync(period);
        }
    }

    /// <summary>
    /// Runs every connection's clocks (idle, first data, data rates; <see cref="GatewayConnection.CheckClocks"/>),
    /// ticking at a quarter of the shortest of them, once a second at most, as Kestrel's heartbeat.
    /// </summary>
    private async Task HeartbeatAsync(TimeSpan period)
    {
        using var timer = new PeriodicTimer(period, _time);
        while (await timer.WaitForNextTickAsync() && !_closedForHeartbeat && !(_isClosed && _connections.IsEmpty))
        {
            CheckClocks();
        }
    }

    /// <summary>
    /// One heartbeat now: checks every connection's clocks (idle, first data, data rates) at the current time of the
    /// gateway's clock, <see cref="ProtocolGatewayOptions.TimeProviderKey"/>. A test that moves a fake clock calls it
    /// to have the check happen at the time it set, without waiting for the heartbeat's next tick.
    /// </summary>
    public void CheckClocks()
    {
        var now = ConnectionClock.Now(_time);
        foreach (var connection in _connections.Values)
        {
            if (connection.CheckClocks(now) is not { } expired)
            {
                continue;
            }

            var (reason, detail) = expired;

            // An idle close is routine (Debug). The others are limits hit, sampled into warnings per kind.
            var count = reason == ConnectionCloseReason.IdleTimeout ? 0 : OrleansProtocol.Diagnostics.LogSampling.Next(Name, reason.ToString());
            if (count > 0 && GatewayLog.IsSampled(count))
            {
                GatewayLog.ClockLimitHit(_connectionLogger, connection.Id, reason, detail, count);
            }
            else
            {
                GatewayLog.ClockExpired(_connectionLogger, connection.Id, reason, detail);
            }
        }
    }

    private async Task RunConnectionAsync(GatewayConnection connection)
    {
        try
        {
            await connection.RunAsync();
        }
        finally
        {
            _admission.Release(connection.CountedAddress);
            _budget.Closed();
            _connections.TryRemove(connection.Id, out _);
            if (_connections.IsEmpty)
            {
                Interlocked.Exchange(ref _drained, null)?.TrySetResult();
            }
        }
    }
}

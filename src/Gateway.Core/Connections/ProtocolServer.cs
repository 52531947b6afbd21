using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
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
public sealed partial class ProtocolServer : IAsyncDisposable
{
    private readonly ProtocolListenerOptions _options;
    private readonly ListenerContext _listener;
    private readonly GatewayServices _services;
    private readonly Action<ProtocolServer> _forget;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, GatewayConnection> _connections = new();
    private readonly ConnectionAdmission _admission;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConnectionHeartbeat _heartbeat;

    // Guards binding, starting and closing (the listeners, the accept loops, the two flags' moves); the flags and the
    // listeners are read without it.
    private readonly Lock _lock = new();
    private volatile List<IConnectionListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private Task _unbound = Task.CompletedTask;
    private TaskCompletionSource? _drained;
    private volatile bool _serving;
    private volatile bool _isClosed;
    private int _servingForever;

    /// <param name="name">The server's name: the front of its connections' ids.</param>
    /// <param name="options">The listener's settings.</param>
    /// <param name="grainType">The protocol grain each connection gets.</param>
    /// <param name="siting">Where the grains are placed.</param>
    /// <param name="services">The gateway's shared services.</param>
    /// <param name="forget">Takes the server out of the gateway's registry when it is disposed.</param>
    internal ProtocolServer(
        string name,
        ProtocolListenerOptions options,
        GrainType grainType,
        ConnectionSiting siting,
        GatewayServices services,
        Action<ProtocolServer> forget)
    {
        Name = name;
        _options = options;
        _services = services;
        _forget = forget;
        _logger = services.LoggerFactory.CreateLogger<ProtocolServer>();
        _heartbeat = new ConnectionHeartbeat(name, _connections, services.Time, services.ConnectionLogger);
        _admission = new ConnectionAdmission(name, options, services.Budget, services.Metrics, _logger, () => _connections.Count);

        // The certificate is loaded once per server; a bad file fails the server's start, not its first connection.
        _listener = new ListenerContext(name, grainType, options, siting, services, options.Tls.Enabled ? options.Tls.LoadCertificate() : null)
        {
            AdmitProxiedClient = options.ProxyProtocol ? _admission.AdmitProxied : null,
        };
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
        await ShutdownAsync(ConnectionCloseReason.ServerShutdown, _services.DrainTimeout, CancellationToken.None);
        _forget(this);
    }

    /// <summary>
    /// The nursery's exit: close, ask every connection to close, wait up to <paramref name="drainTimeout"/>, abort
    /// what is left (with a warning naming how many), and wait for every grain to be told.
    /// </summary>
    internal async Task ShutdownAsync(ConnectionCloseReason reason, TimeSpan drainTimeout, CancellationToken cancellationToken)
    {
        _heartbeat.Stop();
        Close();
        await _unbound;

        // The deadline counts from here, before the connections are asked to close (not from whenever the wait starts).
        var draining = _services.Time.GetTimestamp();
        CloseClients(reason, "The server is shutting down.");
        var left = drainTimeout - _services.Time.GetElapsedTime(draining);
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
            await WaitClosed().WaitAsync(timeout, _services.Time, cancellationToken);
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

    /// <summary>Open connections counted against client addresses (<see cref="ProtocolListenerOptions.MaxConnectionsPerAddress"/>).</summary>
    internal int CountedAddresses => _admission.CountedAddresses;

    /// <summary>Starts the heartbeat that runs the connections' clocks; the outbound server, which never binds, calls it alone.</summary>
    internal void StartClocks() => _heartbeat.Start(_options, () => !(_isClosed && _connections.IsEmpty));

    /// <summary>
    /// One heartbeat now: checks every connection's clocks (idle, first data, data rates) at the current time of the
    /// gateway's clock, <see cref="ProtocolGatewayOptions.TimeProviderKey"/>. A test that moves a fake clock calls it
    /// to have the check happen at the time it set, without waiting for the heartbeat's next tick.
    /// </summary>
    public void CheckClocks() => _heartbeat.Check();
}

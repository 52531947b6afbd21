using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway;

/// <summary>
/// One listener of the gateway, serving one protocol grain type: the counterpart of asyncio's <c>Server</c>.
/// Sockets come from Kestrel's socket transport; each accepted connection gets its own grain.
/// </summary>
public sealed class ProtocolServer
{
    private readonly ProtocolListenerOptions _options;
    private readonly GrainType _grainType;
    private readonly IGrainFactory _grainFactory;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ILogger _connectionLogger;
    private readonly ConcurrentDictionary<string, GatewayConnection> _connections = new();
    private IConnectionListener? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    internal ProtocolServer(
        string name,
        ProtocolListenerOptions options,
        GrainType grainType,
        IGrainFactory grainFactory,
        ILoggerFactory loggerFactory)
    {
        Name = name;
        _options = options;
        _grainType = grainType;
        _grainFactory = grainFactory;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<ProtocolServer>();
        _connectionLogger = loggerFactory.CreateLogger<GatewayConnection>();
    }

    /// <summary>The listener's name, as registered.</summary>
    public string Name { get; }

    /// <summary>The bound endpoints, with the real port when 0 was asked for (asyncio <c>server.sockets[i].getsockname()</c>).</summary>
    public IReadOnlyList<EndPoint> EndPoints { get; private set; } = [];

    /// <summary>True while the server accepts connections (asyncio <c>is_serving</c>).</summary>
    public bool IsServing { get; private set; }

    /// <summary>Number of connections currently open on this server.</summary>
    public int ConnectionCount => _connections.Count;

    internal IEnumerable<GatewayConnection> Connections => _connections.Values;

    internal async Task StartAsync(CancellationToken cancellationToken)
    {
        var transportOptions = new SocketTransportOptions
        {
            Backlog = _options.Backlog,
            NoDelay = _options.NoDelay,
            MaxReadBufferSize = _options.MaxReadBufferSize,
            // Kestrel reads only when data is there, so an idle connection holds no receive buffer.
            WaitForDataBeforeAllocatingBuffer = true,

            // The pump's continuation runs on the socket's completion thread instead of after another thread-pool
            // hop. Safe here because the pump never blocks: it copies the bytes out and awaits the grain call.
            UnsafePreferInlineScheduling = true,
        };
        var factory = new SocketTransportFactory(Options.Create(transportOptions), _loggerFactory);
        _listener = await factory.BindAsync(_options.GetEndPoint(), cancellationToken);
        EndPoints = [_listener.EndPoint];
        IsServing = true;
        _acceptLoop = AcceptLoopAsync(_listener);
        GatewayLog.ListenerStarted(_logger, Name, _grainType.ToString(), _listener.EndPoint);
    }

    /// <summary>
    /// Stops accepting, asks every connection to flush and close, waits up to <paramref name="drainTimeout"/>, then
    /// aborts what is left. Every connection's grain gets its <c>ConnectionLost</c>.
    /// </summary>
    internal async Task StopAsync(TimeSpan drainTimeout, CancellationToken cancellationToken)
    {
        if (_listener is not { } listener)
        {
            return;
        }

        IsServing = false;
        await listener.UnbindAsync(cancellationToken);
        await _acceptLoop;
        GatewayLog.ListenerStopped(_logger, Name, listener.EndPoint);

        foreach (var connection in _connections.Values)
        {
            connection.RequestClose(ConnectionCloseReason.ServerShutdown, "The server is shutting down.");
        }

        if (!await WaitForConnectionsAsync(drainTimeout, cancellationToken))
        {
            var remaining = _connections.Values.ToArray();
            GatewayLog.DrainIncomplete(_logger, Name, remaining.Length, drainTimeout);
            foreach (var connection in remaining)
            {
                connection.Abort(ConnectionCloseReason.ServerShutdown, "The server is shutting down; the drain timeout passed.");
            }

            // Aborted connections still tell their grains; a grain stuck in a callback cannot hold the silo forever.
            if (!await WaitForConnectionsAsync(TimeSpan.FromSeconds(5), cancellationToken))
            {
                GatewayLog.StopIncomplete(_logger, Name, _connections.Count);
            }
        }

        await listener.DisposeAsync();
    }

    private async Task<bool> WaitForConnectionsAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var all = Task.WhenAll(_connections.Values.Select(c => c.Completion));
        try
        {
            await all.WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            return false;
        }
    }

    private async Task AcceptLoopAsync(IConnectionListener listener)
    {
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

            GatewayConnection connection;
            try
            {
                connection = new GatewayConnection(context, Name, _grainType, _grainFactory, _options, _connectionLogger);
            }
            catch (Exception ex)
            {
                GatewayLog.AcceptFailed(_logger, Name, ex);
                await context.DisposeAsync();
                continue;
            }

            _connections[connection.Id] = connection;
            _ = RunConnectionAsync(connection);
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
            _connections.TryRemove(connection.Id, out _);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway;

/// <summary>
/// Binding and accepting: the listeners on Kestrel's socket transport, the accept loops with admission at accept, and
/// each taken connection tracked until it ends (the count the drain waits on, the give-back of its places).
/// </summary>
public sealed partial class ProtocolServer
{
    internal async Task BindAsync(CancellationToken cancellationToken)
    {
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
        var factory = new SocketTransportFactory(Options.Create(transportOptions), _services.LoggerFactory);
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
            GatewayLog.ListenerStarted(_logger, Name, _listener.GrainTypeName, listener.EndPoint);
        }

        StartClocks();

        if (_options.StartServing)
        {
            StartServing();
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
                _ = ConnectionRefusal.RefuseAsync(context, _listener.RefusalMessage, detail);
                continue;
            }

            GatewayConnection connection;
            try
            {
                connection = new GatewayConnection(context, _listener) { CountedAddress = counted };
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
        _services.Budget.Opened();
        _ = RunConnectionAsync(connection);
    }

    /// <summary>
    /// Raised as each connection is taken on, before its grain is called, on the accepting thread (keep the handler
    /// short). For tools and test kits; protocol code has <c>ConnectionMade</c>.
    /// </summary>
    public event Action<AcceptedConnection>? ConnectionAccepted;

    private async Task RunConnectionAsync(GatewayConnection connection)
    {
        try
        {
            await connection.RunAsync();
        }
        finally
        {
            _admission.Release(connection.CountedAddress);
            _services.Budget.Closed();
            _connections.TryRemove(connection.Id, out _);
            if (_connections.IsEmpty)
            {
                Interlocked.Exchange(ref _drained, null)?.TrySetResult();
            }
        }
    }
}

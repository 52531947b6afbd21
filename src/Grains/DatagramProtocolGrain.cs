using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Placement;

namespace OrleansProtocol;

/// <summary>
/// Base class of a datagram protocol (asyncio's <c>DatagramProtocol</c>): override <see cref="DatagramReceived"/> and
/// answer with <see cref="DatagramTransport.SendTo"/>. One activation per UDP endpoint, or per remote peer (its
/// state is then that peer's), as the endpoint is configured.
/// </summary>
[PreferLocalPlacement]
[KeepAlive]
public abstract class DatagramProtocolGrain : Grain, IDatagramGrain
{
    private DatagramTransport? _transport;
    private IDatagramObserver? _observer;
    private ILogger? _logger;
    private int _callbackDepth;
    private UnsolicitedSender<Datagram[]>? _sender;
    private bool _lost;

    /// <summary>The endpoint's transport; available from <see cref="ConnectionMade"/> on.</summary>
    protected DatagramTransport Transport =>
        _transport ?? throw new InvalidOperationException("The transport is available from ConnectionMade on.");

    /// <summary>A logger named after the protocol's class.</summary>
    protected ILogger Logger => _logger ??= ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger(GetType());

    /// <summary>The endpoint is ready (asyncio <c>connection_made</c>).</summary>
    protected virtual Task ConnectionMade(DatagramTransport transport) => Task.CompletedTask;

    /// <summary>A datagram arrived from <paramref name="remote"/> (asyncio <c>datagram_received</c>).</summary>
    protected virtual Task DatagramReceived(ReadOnlyMemory<byte> data, IPEndPoint remote) => Task.CompletedTask;

    /// <summary>A send or receive failed (asyncio <c>error_received</c>); the endpoint stays open.</summary>
    protected virtual Task ErrorReceived(Exception exception) => Task.CompletedTask;

    /// <summary>The endpoint closed, or this peer went idle (asyncio <c>connection_lost</c>); called once.</summary>
    protected virtual Task ConnectionLost(Exception? exception) => Task.CompletedTask;

    async Task<Datagram[]> IDatagramGrain.ConnectionMade(DatagramEndpointInfo endpoint, IDatagramObserver transport)
    {
        _observer = transport;
        _transport = new DatagramTransport(endpoint, OnSend);
        await Run(nameof(ConnectionMade), () => ConnectionMade(_transport));
        return _transport.TakeOutgoing();
    }

    async Task<Datagram[]> IDatagramGrain.DatagramsReceived(Datagram[] datagrams)
    {
        if (_transport is null || _lost)
        {
            return [];
        }

        foreach (var datagram in datagrams)
        {
            await Run(nameof(DatagramReceived), () => DatagramReceived(datagram.Data, datagram.RemoteEndPoint));
        }

        return _transport.TakeOutgoing();
    }

    async Task<Datagram[]> IDatagramGrain.ErrorReceived(string error, IPEndPoint? remoteEndPoint)
    {
        if (_transport is null || _lost)
        {
            return [];
        }

        await Run(nameof(ErrorReceived), () => ErrorReceived(new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.SocketError, error)));
        return _transport.TakeOutgoing();
    }

    async Task IDatagramGrain.ConnectionLost(ConnectionCloseReason reason, string? message)
    {
        if (_transport is not null && !_lost)
        {
            _lost = true;
            _transport.Closed = true;
            try
            {
                await ConnectionLost(reason.IsClean() ? null : new ConnectionClosedException(reason, message));
            }
            catch (Exception ex)
            {
                Logger.LogError(ex, "Datagram endpoint {Endpoint}: ConnectionLost failed.", _transport.Endpoint.EndpointName);
            }
        }

        DeactivateOnIdle();
    }

    private async Task Run(string name, Func<Task> callback)
    {
        _callbackDepth++;
        try
        {
            await callback();
        }
        catch (Exception ex)
        {
            // asyncio logs a datagram callback's error and keeps the endpoint: one bad datagram must not stop it.
            Logger.LogError(ex, "Datagram endpoint {Endpoint}: {Callback} failed.", _transport!.Endpoint.EndpointName, name);
        }
        finally
        {
            _callbackDepth--;
        }
    }

    /// <summary>Sends made outside a callback go through the observer, one awaited push at a time.</summary>
    private void OnSend() => (_sender ??= new UnsolicitedSender<Datagram[]>(
        () => _callbackDepth > 0 || _observer is null,
        () => _transport!.TakeOutgoing() is { Length: > 0 } datagrams ? datagrams : null,
        datagrams => _observer!.SendTo(datagrams),
        ex =>
        {
            Logger.LogWarning(ex, "Datagram endpoint {Endpoint}: the gateway could not be reached.", _transport!.Endpoint.EndpointName);
            return Task.CompletedTask;
        })).Changed();
}

/// <summary>A datagram grain's view of its UDP endpoint (asyncio's <c>DatagramTransport</c>).</summary>
public sealed class DatagramTransport
{
    private readonly Action _onSend;
    private List<Datagram> _outgoing = [];

    internal DatagramTransport(DatagramEndpointInfo endpoint, Action onSend)
    {
        Endpoint = endpoint;
        _onSend = onSend;
    }

    /// <summary>The endpoint and, in per-peer mode, the peer.</summary>
    public DatagramEndpointInfo Endpoint { get; }

    /// <summary>True once the endpoint closed; sends are then dropped.</summary>
    public bool IsClosing => Closed;

    internal bool Closed { get; set; }

    /// <summary>
    /// Sends <paramref name="data"/> to <paramref name="remote"/>, or to this grain's peer in per-peer mode
    /// (asyncio <c>sendto</c>). Never blocks; the bytes are copied.
    /// </summary>
    /// <exception cref="ArgumentNullException">No remote given and the endpoint is not per-peer.</exception>
    public void SendTo(ReadOnlySpan<byte> data, IPEndPoint? remote = null)
    {
        var destination = remote ?? Endpoint.Peer ?? throw new ArgumentNullException(nameof(remote), "This endpoint serves every peer: say which one.");
        if (Closed)
        {
            return;
        }

        _outgoing.Add(new Datagram(data.ToArray(), destination));
        _onSend();
    }

    /// <summary>Optional information (asyncio <c>get_extra_info</c>): <c>sockname</c>, and <c>peername</c> in per-peer mode.</summary>
    public object? GetExtraInfo(string name, object? defaultValue = null) => name switch
    {
        ExtraInfoKeys.SockName => Endpoint.LocalEndPoint,
        ExtraInfoKeys.PeerName => Endpoint.Peer ?? defaultValue,
        _ => defaultValue,
    };

    internal Datagram[] TakeOutgoing()
    {
        if (_outgoing.Count == 0)
        {
            return [];
        }

        var taken = _outgoing.ToArray();
        _outgoing = [];
        return taken;
    }
}

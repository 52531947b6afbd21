using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Gateway;

/// <summary>
/// A UDP endpoint bound in the silo (asyncio <c>create_datagram_endpoint</c>): one receive loop, and per grain a bounded
/// queue and a pump that keeps one grain call in flight. Overload drops datagrams (counted); it never blocks the socket.
/// </summary>
public sealed class DatagramEndpoint
{
    private readonly DatagramEndpointOptions _options;
    private readonly GrainType _grainType;
    private readonly IGrainFactory _grainFactory;
    private readonly string _keyPrefix;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Peer> _peers = new();
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _socket;
    private Task _receiveLoop = Task.CompletedTask;
    private Task _idleSweep = Task.CompletedTask;
    private long _received;
    private long _dropped;
    private long _sent;

    internal DatagramEndpoint(string name, DatagramEndpointOptions options, GrainType grainType, IGrainFactory grainFactory, string siloKey, ILogger logger)
    {
        Name = name;
        _options = options;
        _grainType = grainType;
        _grainFactory = grainFactory;

        // Unique per silo: each silo's socket is its own endpoint.
        _keyPrefix = $"{name}@{siloKey}";
        _logger = logger;
    }

    /// <summary>The endpoint's name, as registered.</summary>
    public string Name { get; }

    /// <summary>The bound address, with the real port when 0 was asked for.</summary>
    public IPEndPoint LocalEndPoint { get; private set; } = new(IPAddress.None, 0);

    /// <summary>Datagrams received.</summary>
    public long ReceivedDatagrams => Interlocked.Read(ref _received);

    /// <summary>Datagrams dropped because a grain's queue was full or the peer limit was reached.</summary>
    public long DroppedDatagrams => Interlocked.Read(ref _dropped);

    /// <summary>Datagrams sent.</summary>
    public long SentDatagrams => Interlocked.Read(ref _sent);

    /// <summary>Grains currently served (one in per-endpoint mode).</summary>
    public int PeerCount => _peers.Count;

    internal void Start()
    {
        var address = ProtocolListenerOptions.ParseHost(_options.Host) ?? IPAddress.Loopback;
        _socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        _socket.Bind(new IPEndPoint(address, _options.Port));
        LocalEndPoint = (IPEndPoint)_socket.LocalEndPoint!;
        _receiveLoop = ReceiveLoopAsync();
        if (_options.Mode == DatagramGrainMode.PerPeer && _options.PeerIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            _idleSweep = SweepIdlePeersAsync();
        }

        _logger.LogInformation("Datagram endpoint {Endpoint} serving {GrainType} on udp://{EndPoint}", Name, _grainType, LocalEndPoint);
    }

    internal async Task StopAsync()
    {
        _stopping.Cancel();
        _socket?.Dispose();
        await _receiveLoop;
        await _idleSweep;
        await Task.WhenAll(_peers.Values.Select(p => p.StopAsync(ConnectionCloseReason.ServerShutdown, "The endpoint is shutting down.")));
        _peers.Clear();
        _logger.LogInformation(
            "Datagram endpoint {Endpoint} stopped: {Received} received, {Sent} sent, {Dropped} dropped",
            Name, ReceivedDatagrams, SentDatagrams, DroppedDatagrams);
    }

    private async Task ReceiveLoopAsync()
    {
        await Task.Yield();
        var buffer = new byte[64 * 1024];
        EndPoint any = new IPEndPoint(LocalEndPoint.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!_stopping.IsCancellationRequested)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await _socket!.ReceiveFromAsync(buffer, SocketFlags.None, any, _stopping.Token);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // An ICMP error from an earlier send, on platforms that report it here.
                _logger.LogDebug(ex, "Datagram endpoint {Endpoint}: receive error.", Name);
                continue;
            }

            Interlocked.Increment(ref _received);
            var remote = (IPEndPoint)result.RemoteEndPoint;
            var key = _options.Mode == DatagramGrainMode.PerPeer ? $"{_keyPrefix}/{remote}" : _keyPrefix;
            if (!_peers.TryGetValue(key, out var peer))
            {
                if (_options.Mode == DatagramGrainMode.PerPeer && _peers.Count >= _options.MaxPeers)
                {
                    Interlocked.Increment(ref _dropped);
                    continue;
                }

                peer = _peers.GetOrAdd(key, k => new Peer(this, k, _options.Mode == DatagramGrainMode.PerPeer ? remote : null));
            }

            if (!peer.TryEnqueue(new Datagram(buffer.AsSpan(0, result.ReceivedBytes).ToArray(), remote)))
            {
                Interlocked.Increment(ref _dropped);
            }
        }
    }

    private async Task SweepIdlePeersAsync()
    {
        var period = _options.PeerIdleTimeout / 2;
        try
        {
            while (true)
            {
                await Task.Delay(period, _stopping.Token);
                var cutoff = Environment.TickCount64 - (long)_options.PeerIdleTimeout.TotalMilliseconds;
                foreach (var (key, peer) in _peers)
                {
                    if (peer.LastActivity < cutoff && peer.IsIdle && _peers.TryRemove(key, out _))
                    {
                        await peer.StopAsync(ConnectionCloseReason.IdleTimeout, $"No datagram for {_options.PeerIdleTimeout}.");
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task SendAsync(Datagram[] datagrams, Peer peer)
    {
        foreach (var datagram in datagrams)
        {
            try
            {
                await _socket!.SendToAsync(datagram.Data, SocketFlags.None, datagram.RemoteEndPoint);
                Interlocked.Increment(ref _sent);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                peer.ReportError(ex.Message, datagram.RemoteEndPoint);
            }
        }
    }

    /// <summary>One grain of the endpoint: its queue, its pump, and its observer.</summary>
    private sealed class Peer : IDatagramObserver
    {
        private readonly DatagramEndpoint _endpoint;
        private readonly IDatagramGrain _grain;
        private readonly IPEndPoint? _remote;
        private readonly Channel<Datagram> _queue;
        private readonly ConcurrentQueue<(string Error, IPEndPoint Remote)> _errors = new();
        private readonly Task _pump;

        public Peer(DatagramEndpoint endpoint, string key, IPEndPoint? remote)
        {
            _endpoint = endpoint;
            _remote = remote;
            _grain = endpoint._grainFactory.GetGrain<IDatagramGrain>(GrainId.Create(endpoint._grainType, key));
            _queue = Channel.CreateBounded<Datagram>(new BoundedChannelOptions(endpoint._options.MaxQueuedDatagrams)
            {
                SingleReader = true,
                SingleWriter = true,
                FullMode = BoundedChannelFullMode.Wait,
            });
            LastActivity = Environment.TickCount64;
            _pump = Task.Run(PumpAsync);
        }

        public long LastActivity { get; private set; }

        public bool IsIdle => _queue.Reader.Count == 0;

        /// <summary>False when the queue is full: the datagram is dropped (and counted by the caller).</summary>
        public bool TryEnqueue(Datagram datagram)
        {
            LastActivity = Environment.TickCount64;
            return _queue.Writer.TryWrite(datagram);
        }

        public void ReportError(string error, IPEndPoint remote) => _errors.Enqueue((error, remote));

        Task IDatagramObserver.SendTo(Datagram[] datagrams) => _endpoint.SendAsync(datagrams, this);

        public async Task StopAsync(ConnectionCloseReason reason, string detail)
        {
            _queue.Writer.TryComplete();
            await _pump;
            try
            {
                await _grain.ConnectionLost(reason, detail);
            }
            catch (Exception ex)
            {
                _endpoint._logger.LogWarning(ex, "Datagram endpoint {Endpoint}: could not deliver ConnectionLost.", _endpoint.Name);
            }
        }

        private async Task PumpAsync()
        {
            // Off any grain turn (Task.Run), so Orleans registers the observer with the silo's hosted client; held
            // strongly by this peer for as long as it lives.
            var observer = _endpoint._grainFactory.CreateObjectReference<IDatagramObserver>(this);
            try
            {
                var info = new DatagramEndpointInfo(_endpoint.Name, _endpoint.LocalEndPoint, _remote);
                await _endpoint.SendAsync(await _grain.ConnectionMade(info, observer), this);
                var batch = new List<Datagram>(_endpoint._options.MaxDatagramsPerCall);
                while (await _queue.Reader.WaitToReadAsync())
                {
                    while (batch.Count < _endpoint._options.MaxDatagramsPerCall && _queue.Reader.TryRead(out var datagram))
                    {
                        batch.Add(datagram);
                    }

                    var replies = await _grain.DatagramsReceived([.. batch]);
                    batch.Clear();
                    await _endpoint.SendAsync(replies, this);
                    while (_errors.TryDequeue(out var error))
                    {
                        await _endpoint.SendAsync(await _grain.ErrorReceived(error.Error, error.Remote), this);
                    }
                }
            }
            catch (Exception ex)
            {
                // The grain is unreachable: drop this peer's queue; datagrams from it start a new pump.
                _endpoint._logger.LogWarning(ex, "Datagram endpoint {Endpoint}: the grain could not be reached.", _endpoint.Name);
                _queue.Writer.TryComplete();
                _endpoint._peers.TryRemove(new KeyValuePair<string, Peer>(_grain.GetPrimaryKeyString(), this));
            }
            finally
            {
                _endpoint._grainFactory.DeleteObjectReference<IDatagramObserver>(observer);
            }
        }
    }
}

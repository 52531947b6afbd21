using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.Placement;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// One accepted socket and its grain: the inbound pump (this file) and the outbound writer
/// (<c>GatewayConnection.Outbound.cs</c>). The connection is also the grain's transport observer.
/// </summary>
/// <remarks>
/// Inbound, the pump keeps exactly one grain callback in flight and awaits it before the next, so callbacks reach the
/// grain in order on any topology; bytes read meanwhile wait in Kestrel's input pipe and are coalesced into the next
/// <c>DataReceived</c>. When the pipe holds <see cref="ProtocolListenerOptions.MaxReadBufferSize"/> bytes, Kestrel
/// stops reading the socket and TCP pushes back on the peer. The pump also holds input while writing is paused (the
/// write buffer went over the high-water mark) unless <see cref="ProtocolListenerOptions.ReadWhileWritingPaused"/>.
/// </remarks>
internal sealed partial class GatewayConnection
{
    private readonly ConnectionContext _context;
    private readonly Socket? _socket;
    private PipeReader _input;
    private IProtocolGrain _grain;

    // The current protocol's grain, guarded by _lock with the sequencer's epoch: pushes from any other grain are stale.
    private GrainId _grainId;
    private readonly IGrainFactory _grainFactory;
    private readonly int _maxDataReceivedSize;
    private readonly bool _readWhileWritingPaused;
    private readonly byte[] _refusalMessage;
    private readonly IFrameDecoder? _decoder;
    private readonly long _maxBufferedFrame;
    private readonly ConnectionSiting _siting;
    private readonly GatewayMetrics _metrics;
    private readonly (IReadOnlyList<IPNetwork> Trusted, TimeSpan Timeout)? _proxy;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly AsyncSignal _pumpSignal = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<bool> _made = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _told = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();

    // Keeps one FramesReceived call a reasonable Orleans message even for tiny frames.
    private const int MaxFramesPerCall = 1024;

    // Guarded by _lock.
    private ConnectionCloseReason _closeReason;
    private string? _closeDetail;
    private bool _closeRequested;
    private (ConnectionCloseReason Reason, string? Detail)? _serverClose;
    private bool _serverCloseSent;
    private bool _aborted;
    private bool _readPaused;
    private bool _peerEof;
    private bool _grainLost;
    private bool _detached;
    private bool _locateGrain;

    // Deliveries of one grain call Orleans may reject (undelivered) before the connection gives up on its grain.
    private const int MaxGrainCallAttempts = 3;
    private (string Protocol, ReadOnlyMemory<byte> Data)? _handOff;

    private long _bytesReceived;

    public GatewayConnection(
        ConnectionContext context,
        string listenerName,
        GrainType grainType,
        IGrainFactory grainFactory,
        ProtocolListenerOptions options,
        ILogger logger,
        ConnectionSiting siting,
        GatewayMetrics metrics,
        TimeProvider time,
        X509Certificate2? serverCertificate = null)
    {
        _siting = siting;
        _metrics = metrics;
        _proxy = options.ProxyProtocol ? (options.TrustedNetworks, options.ProxyHeaderTimeout) : null;
        _tlsServer = serverCertificate is null ? null : (serverCertificate, options.Tls);
        _context = context;
        // Null on an in-memory connection: the writer then sends through the transport's output pipe.
        _socket = context.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (_socket is { ProtocolType: ProtocolType.Tcp })
        {
            // TCP only: a Unix socket has no Nagle to turn off.
            _socket.NoDelay = options.NoDelay;
        }

        _input = context.Transport.Input;
        _grainFactory = grainFactory;
        _maxDataReceivedSize = options.MaxDataReceivedSize;
        _flow = new WriteFlow(options.MaxWriteBufferSize);
        _readWhileWritingPaused = options.ReadWhileWritingPaused;
        _refusalMessage = options.RefusalMessage is { Length: > 0 } refusal ? System.Text.Encoding.UTF8.GetBytes(refusal) : [];
        _time = time;
        _clock = new ConnectionClock(ConnectionClock.Limits.From(options), Now);
        _logger = logger;

        // Unique across the cluster and over time; never ip:port, which the OS reuses. The listener's name in front
        // lets anyone find the connection in that listener's directory by id alone.
        var id = $"{listenerName}/{Guid.CreateVersion7():N}";
        var framing = options.Framing.ToFormat();
        _decoder = options.Framing.CreateDecoder(framing);
        _maxBufferedFrame = framing.MaxFrameSize + 16L + (framing.Delimiter?.Length ?? 0);
        var unix = IsUnix(context);
        Info = new ConnectionInfo(id, listenerName, context.LocalEndPoint as IPEndPoint, context.RemoteEndPoint as IPEndPoint)
        {
            Framing = framing,
            GrainType = grainType.ToString(),
            GatewaySilo = siting.LocalSiloName,
            LocalPath = unix ? UnixPath(context.LocalEndPoint) : null,
            RemotePath = unix ? UnixPath(context.RemoteEndPoint) : null,
            MaxWriteBufferSize = options.MaxWriteBufferSize,
        };
        _grainId = GrainId.Create(grainType, id);
        _grain = grainFactory.GetGrain<IProtocolGrain>(_grainId);
    }

    public ConnectionInfo Info { get; private set; }

    public string Id => Info.ConnectionId;

    /// <summary>True once the grain's <c>ConnectionMade</c> has run; false if the connection ended first.</summary>
    public Task<bool> Made => _made.Task;

    /// <summary>Completes once the connection has ended and its grain was told (before a graceful close's linger).</summary>
    internal Task GrainTold => _told.Task;

    /// <summary>Completes when the connection is closed and its grain was told.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Runs the connection from <c>ConnectionMade</c> to <c>ConnectionLost</c>. Never throws.</summary>
    public async Task RunAsync()
    {
        using var scope = _logger.BeginScope(new ConnectionLogScope(Id));
        GatewayLog.ConnectionAccepted(_logger, Id, Info.RemoteEndPoint, Info.ListenerName);
        _metrics.ConnectionOpened(Info.ListenerName);
        _writer = WriteLoopAsync();
        try
        {
            // A bad PROXY header or a failed TLS handshake drops the connection before any grain exists.
            if ((_proxy is null || await ReadProxyHeaderAsync(_proxy.Value.Trusted, _proxy.Value.Timeout))
                && (!UsesTls || await HandshakeAsync()))
            {
                await ConnectGrainAsync();
                _made.TrySetResult(true);
                await ReceiveLoopAsync();
            }
        }
        catch (Exception ex)
        {
            GatewayLog.GrainUnavailable(_logger, Id, ex);
            Abort(ConnectionCloseReason.GrainUnavailable, ex.Message);
        }

        try
        {
            await _writer;
            await NotifyConnectionLostAsync();
            _told.TrySetResult();
            if (_linger)
            {
                await LingerAsync();
            }

            await _context.DisposeAsync();
            GatewayLog.ConnectionClosed(
                _logger, Id, _closeReason, _closeDetail, Stopwatch.GetElapsedTime(_startTimestamp),
                Interlocked.Read(ref _bytesReceived), BytesSent);
        }
        finally
        {
            lock (_lock)
            {
                // A connection that ends paused leaves the paused gauges.
                SetReadPausedLocked(false);
                RestartWriteFlowLocked();
            }

            _metrics.ConnectionClosed(Info.ListenerName, _closeReason, Stopwatch.GetElapsedTime(_startTimestamp));

            // Whatever happened above, the server's drain must not wait for this connection.
            _made.TrySetResult(false);
            _told.TrySetResult();
            _completion.TrySetResult();
        }
    }

    /// <summary>
    /// Reads the PROXY protocol header that a trusted load balancer sends first, and takes the client's addresses from
    /// it. Anything else — an untrusted sender, a malformed, truncated or late header — drops the connection.
    /// </summary>
    private async Task<bool> ReadProxyHeaderAsync(IReadOnlyList<IPNetwork> trusted, TimeSpan timeout)
    {
        string? failure = null;
        if (Info.RemoteEndPoint is not { } remote || !trusted.Any(n => n.Contains(remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address)))
        {
            failure = $"A PROXY header from {Info.RemoteEndPoint}, outside the trusted networks, is refused.";
        }
        else
        {
            using var deadline = DeadlineFromAccept(timeout);
            try
            {
                while (failure is null)
                {
                    var result = await _input.ReadAsync(deadline.Token);
                    var buffer = result.Buffer;
                    var status = ProxyProtocolParser.TryParse(buffer, out var header, out var consumed);
                    if (status == ProxyParseStatus.Done)
                    {
                        _input.AdvanceTo(buffer.GetPosition(consumed));
                        Info = Info with
                        {
                            RemoteEndPoint = header.Source ?? Info.RemoteEndPoint,
                            LocalEndPoint = header.Destination ?? Info.LocalEndPoint,
                        };

                        // The per-address limit counts the client the header names (the balancer's own address for
                        // its health checks, which name none), and is released for that same address.
                        if (AdmitProxiedClient?.Invoke(this, (header.Source ?? remote).Address) is { } refusal)
                        {
                            RefuseAfterHeader(refusal);
                            return false;
                        }

                        return true;
                    }

                    _input.AdvanceTo(buffer.Start, buffer.End);
                    if (status == ProxyParseStatus.Invalid)
                    {
                        failure = "The PROXY protocol header is malformed.";
                    }
                    else if (result.IsCompleted)
                    {
                        failure = "The connection ended inside its PROXY protocol header.";
                    }
                }
            }
            catch (OperationCanceledException)
            {
                failure = $"No complete PROXY protocol header within {timeout}.";
            }
            catch (Exception ex)
            {
                failure = $"Reading the PROXY protocol header failed: {ex.Message}";
            }
        }

        LogRejection("proxy_header", failure, GatewayLog.ProxyHeaderRejected);
        lock (_lock)
        {
            _grainLost = true;
            AbortLocked(ConnectionCloseReason.ProtocolError, failure);
        }

        WakeWriter();
        return false;
    }

    /// <summary>
    /// Logs a rejection a client can cause at will (a junk connection), sampled per listener and kind
    /// (<see cref="GatewayLog.IsSampled"/>); the metrics keep the exact count.
    /// </summary>
    private void LogRejection(string kind, string detail, Action<ILogger, string, string, long> log)
    {
        var count = OrleansProtocol.Diagnostics.LogSampling.Next(Info.ListenerName, kind);
        if (GatewayLog.IsSampled(count))
        {
            log(_logger, Id, detail, count);
        }
        else
        {
            GatewayLog.RejectionNotSampled(_logger, Id, kind, detail);
        }
    }

    /// <summary>The client address this connection holds a place for under the per-address limit, if any.</summary>
    internal IPAddress? CountedAddress { get; set; }

    /// <summary>
    /// For a PROXY listener: takes a place for the client the header names, or returns why not. Set by the server.
    /// </summary>
    internal Func<GatewayConnection, IPAddress, string?>? AdmitProxiedClient { get; init; }

    /// <summary>Refused at the per-address limit once the PROXY header named the client: as a refusal at accept.</summary>
    private void RefuseAfterHeader(string detail)
    {
        lock (_lock)
        {
            _grainLost = true;
            if (_refusalMessage.Length > 0)
            {
                _outbound.Enqueue(new OutboundItem(OutboundKind.Data, _refusalMessage));
                _flow.Add(_refusalMessage.Length);
                RequestCloseLocked(ConnectionCloseReason.ConnectionLimit, detail);
            }
            else
            {
                AbortLocked(ConnectionCloseReason.ConnectionLimit, detail);
            }
        }

        WakeWriter();
    }

    /// <summary>
    /// Gives the current grain its observer and its <c>ConnectionMade</c>. Runs outside any grain turn, so Orleans
    /// registers the observer with the silo's hosted client.
    /// </summary>
    private async Task ConnectGrainAsync()
    {
        // ConnectionMade activates the grain: a placement hint on this one call decides its silo.
        var started = Stopwatch.GetTimestamp();
        var reply = await CallGrainAsync((Connection: this, Silo: _siting.PickSilo(Id)), static (grain, s) =>
        {
            if (s.Silo is null)
            {
                return grain.ConnectionMade(s.Connection.Info, s.Connection.Observer);
            }

            RequestContext.Set(IPlacementDirector.PlacementHintKey, s.Silo);
            try
            {
                return grain.ConnectionMade(s.Connection.Info, s.Connection.Observer);
            }
            finally
            {
                RequestContext.Remove(IPlacementDirector.PlacementHintKey);
            }
        });
        _metrics.GrainCall(Info.ListenerName, "connection_made", started);
        GrainSilo = reply.GrainSilo;
        await ApplyReplyAsync(reply);
    }

    /// <summary>Why the connection ended (or is ending); <see cref="ConnectionCloseReason.None"/> while it is open.</summary>
    internal ConnectionCloseReason CloseReason
    {
        get
        {
            lock (_lock)
            {
                return _closeReason;
            }
        }
    }

    /// <summary>The silo the connection's grain lives on, as it said in its <c>ConnectionMade</c> reply.</summary>
    public string? GrainSilo { get; private set; }

    private static bool IsUnix(ConnectionContext context) =>
        context.LocalEndPoint is UnixDomainSocketEndPoint || context.RemoteEndPoint is UnixDomainSocketEndPoint;

    // An unnamed Unix socket (a server's client) reports no end point, or one without a path: asyncio's empty string.
    private static string UnixPath(EndPoint? endPoint) => (endPoint as UnixDomainSocketEndPoint)?.ToString() ?? "";

    /// <summary>The connection's figures now (the directory's <c>ListStatus</c>, the live view).</summary>
    internal ConnectionStatus Status()
    {
        lock (_lock)
        {
            // Shown as GatewaySilo is (address:port@generation), not as the runtime identity (Saddress:port:generation).
            var grainSilo = GrainSilo is { Length: > 1 } silo && silo[0] == 'S' && silo.LastIndexOf(':') is > 1 and var colon
                ? $"{silo[1..colon]}@{silo[(colon + 1)..]}"
                : GrainSilo;
            return new ConnectionStatus(Info, grainSilo, Stopwatch.GetElapsedTime(_startTimestamp), Interlocked.Read(ref _bytesReceived), BytesSent, _flow.Paused, _readPaused);
        }
    }

    /// <summary>The silo's transport observer, where the grain pushes what it does outside callbacks.</summary>
    internal required ITransportObserver Observer { get; init; }

    /// <summary>
    /// asyncio's <c>set_protocol</c>: the connection goes to a new grain of the requested type (same connection id),
    /// which gets <c>ConnectionMade</c> and then the bytes the old protocol left to it, before anything read later.
    /// </summary>
    /// <returns>The handed-over bytes to deliver first, or null.</returns>
    private async Task<byte[]?> SwitchProtocolAsync(string protocol, ReadOnlyMemory<byte> data)
    {
        lock (_lock)
        {
            _sequencer.NextEpoch();
            _grainId = GrainId.Create(GrainType.Create(protocol), Id);

            // The new protocol's counts start here; what the old one left in the buffer is its inheritance.
            Volatile.Write(ref _protocolSentBase, Interlocked.Read(ref _bytesSent));
            Info = Info with { GrainType = protocol, InheritedWriteBufferSize = _flow.Buffered };
            _handOff = null;

            // The new protocol starts as asyncio's does: reading, default watermarks, and told at once if the write
            // buffer is over the high-water mark, so its PauseWriting/ResumeWriting alternate from the start.
            SetReadPausedLocked(false);
            _flowEvents.Clear();
            RestartWriteFlowLocked();
            UpdateWriteFlowLocked();
        }

        _grain = _grainFactory.GetGrain<IProtocolGrain>(_grainId);
        GatewayLog.ProtocolSwitched(_logger, Id, protocol);
        await ConnectGrainAsync();
        return data.IsEmpty ? null : data.ToArray();
    }

    /// <summary>
    /// Asks the connection to close from the server side (its listener closes, the silo stops). The pump asks the
    /// grain, whose reply carries everything it wrote before the request, then the connection flushes and closes.
    /// </summary>
    public void RequestClose(ConnectionCloseReason reason, string? detail)
    {
        lock (_lock)
        {
            if (_closeRequested || _aborted || _serverClose is not null)
            {
                return;
            }

            _serverClose = (reason, detail);
            WakePumpLocked();
        }
    }

    /// <summary>The grain's silo died: reset the connection, and do not call the grain again (it would only activate afresh).</summary>
    public void AbortGrainLost(string detail)
    {
        lock (_lock)
        {
            _grainLost = true;
            AbortLocked(ConnectionCloseReason.GrainUnavailable, detail);
        }

        WakeWriter();
    }

    /// <summary>
    /// The silo the gateway last knew the grain on has ended after stopping gracefully. Its grains either moved (the new
    /// activation's notice may still be on the way) or closed their connections, so the pump asks the grain where it is
    /// instead of taking the silo's end for the grain's; only an answer that it has no record resets the connection.
    /// </summary>
    public void LocateGrain()
    {
        lock (_lock)
        {
            if (_grainLost || _aborted || _closeRequested)
            {
                return;
            }

            _locateGrain = true;
            WakePumpLocked();
        }
    }

    /// <summary>Resets the connection at once, discarding what is buffered.</summary>
    public void Abort(ConnectionCloseReason reason, string? detail)
    {
        lock (_lock)
        {
            AbortLocked(reason, detail);
        }

        WakeWriter();
    }

    private async Task ReceiveLoopAsync()
    {
        byte[]? deferredData = null;
        ReadOnlyMemory<byte>[]? deferredFrames = null;
        var deferredEof = false;
        while (true)
        {
            (bool Pause, long BytesSent)? flowEvent;
            (ConnectionCloseReason Reason, string? Detail)? serverClose = null;
            (string Protocol, ReadOnlyMemory<byte> Data)? handOff;
            bool locate;
            bool paused;
            lock (_lock)
            {
                if (_closeRequested || _aborted)
                {
                    return;
                }

                // One thing per turn, in priority order: hand-off, server close, locating the grain, flow notification,
                // data.
                handOff = _handOff;
                if (handOff is null && _serverClose is not null && !_serverCloseSent)
                {
                    _serverCloseSent = true;
                    serverClose = _serverClose;
                }

                locate = handOff is null && serverClose is null && _locateGrain;
                _locateGrain &= !locate;
                flowEvent = handOff is null && serverClose is null && !locate && _flowEvents.Count > 0 ? _flowEvents.Dequeue() : null;

                // Back-pressure: while the peer has not taken what the protocol wrote (writing is paused), its next
                // input waits, so a protocol that answers what it reads cannot outrun a peer that reads slowly.
                paused = _readPaused || _peerEof || (_flow.Paused && !_readWhileWritingPaused);
            }

            if (handOff is { } switchTo)
            {
                // The hand-off comes with the old protocol's last reply, so nothing was deferred: what it left goes first.
                deferredData = await SwitchProtocolAsync(switchTo.Protocol, switchTo.Data);
                continue;
            }

            StartTlsUpgrade? upgrade;
            lock (_lock)
            {
                upgrade = _startTls is { Done.Task.IsCompleted: false } pending && handOff is null ? pending : null;
            }

            if (upgrade is not null)
            {
                // What the protocol did not take before starting TLS was sent before the handshake: never delivered.
                var undelivered = (deferredData?.Length ?? 0) + (deferredFrames?.Sum(f => (long)f.Length) ?? 0);
                (deferredData, deferredFrames, deferredEof) = (null, null, false);
                if (!await UpgradeToTlsAsync(upgrade, undelivered))
                {
                    return;
                }

                continue;
            }

            if (serverClose is { } close)
            {
                await ApplyReplyAsync(await CallGrainAsync((Connection: this, Close: close), static (grain, s) => grain.CloseRequested(s.Close.Reason, s.Close.Detail, s.Connection.ProtocolBytesSent)));
                lock (_lock)
                {
                    // The reply normally carried the close already; this covers a grain that did not close.
                    RequestCloseLocked(close.Reason, close.Detail);
                }

                WakeWriter();

                continue;
            }

            if (locate)
            {
                await LocateGrainAsync();
                continue;
            }

            // Write flow-control notifications go first, in the order they happened.
            if (flowEvent is { } flow)
            {
                await ApplyReplyAsync(await CallGrainAsync(flow, static (grain, f) => f.Pause ? grain.PauseWriting(f.BytesSent) : grain.ResumeWriting(f.BytesSent)));
                continue;
            }

            if (paused)
            {
                await _pumpSignal.WaitAsync();
                continue;
            }

            // What the grain refused while it had paused reading goes first once it resumes.
            if (deferredData is not null)
            {
                var data = deferredData;
                deferredData = await DeliverDataAsync(data) ? null : data;
                continue;
            }

            if (deferredFrames is not null)
            {
                deferredFrames = await DeliverFramesAsync(deferredFrames);
                continue;
            }

            if (deferredEof)
            {
                deferredEof = !await DeliverEofAsync();
                continue;
            }

            ReadResult result;
            try
            {
                StartReceiveWait();
                result = await _input.ReadAsync();
            }
            catch (Exception ex)
            {
                // Kestrel completes the input with the socket error (a reset, typically).
                Abort(ConnectionCloseReason.PeerReset, ex.Message);
                return;
            }

            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                _clock.PeerSentData();
            }

            if (result.IsCanceled)
            {
                // Woken by CancelPendingRead: state changed (close, abort, a flow event).
                _input.AdvanceTo(buffer.Start);
                continue;
            }

            if (_decoder is not null)
            {
                (deferredFrames, deferredEof) = await ReceiveFramesAsync(result);
                continue;
            }

            if (!buffer.IsEmpty)
            {
                // One copy out of the pipe into an array the grain owns; the pipe's memory goes back to Kestrel's pool.
                var chunk = buffer.Slice(0, Math.Min(buffer.Length, _maxDataReceivedSize)).ToArray();
                _input.AdvanceTo(buffer.GetPosition(chunk.Length));
                Interlocked.Add(ref _bytesReceived, chunk.Length);
                _clock.Touch(Now);
                _metrics.BytesReceived(Info.ListenerName, chunk.Length);
                if (!await DeliverDataAsync(chunk))
                {
                    deferredData = chunk;
                }
            }
            else if (result.IsCompleted)
            {
                _input.AdvanceTo(buffer.End);
                deferredEof = !await DeliverEofAsync();
            }
            else
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
    }

    /// <summary>
    /// The framed read: whole frames out of the pipe (a batch of them up to <see cref="ProtocolListenerOptions.MaxDataReceivedSize"/>),
    /// an incomplete one left there until the rest arrives; a frame over the limit closes the connection before its
    /// body is read.
    /// </summary>
    /// <returns>Frames the grain deferred because it paused reading (or null), and whether it deferred the EOF.</returns>
    private async Task<(ReadOnlyMemory<byte>[]? DeferredFrames, bool DeferredEof)> ReceiveFramesAsync(ReadResult result)
    {
        var buffer = result.Buffer;

        // Allocated at the first whole frame: a peer trickling a frame costs no allocation per read.
        List<ReadOnlyMemory<byte>>? frames = null;
        long consumed = 0;
        long batchBytes = 0;
        var status = FrameReadStatus.NeedMoreData;
        string? problem = null;
        while (batchBytes < _maxDataReceivedSize && (frames?.Count ?? 0) < MaxFramesPerCall)
        {
            status = _decoder!.TryRead(buffer.Slice(consumed), out var frame, out var frameLength);
            if (status != FrameReadStatus.Frame)
            {
                break;
            }

            if (frameLength <= 0 || frameLength > buffer.Length - consumed)
            {
                // A decoder that makes no progress (or claims bytes it was not given) would spin or corrupt the stream.
                status = FrameReadStatus.Invalid;
                problem = $"The listener's decoder returned a frame consuming {frameLength} of {buffer.Length - consumed} bytes.";
                break;
            }

            (frames ??= []).Add(frame.ToArray());
            consumed += frameLength;
            batchBytes += frame.Length;
        }

        if (status == FrameReadStatus.NeedMoreData && buffer.Length - consumed > _maxBufferedFrame)
        {
            // The backstop for a decoder that does not decide TooLarge from its headers: memory stays bounded.
            status = FrameReadStatus.TooLarge;
            problem = $"The listener's decoder needed more than {buffer.Length - consumed} bytes for one frame, over the maximum of {Info.Framing.MaxFrameSize} bytes.";
        }

        var truncatedByEof = frames is null && status == FrameReadStatus.NeedMoreData && result.IsCompleted;
        if (truncatedByEof)
        {
            if (buffer.Length > consumed)
            {
                GatewayLog.TruncatedFrame(_logger, Id, buffer.Length - consumed);
            }

            _input.AdvanceTo(buffer.End);
        }
        else
        {
            // Examined everything only when what is left is an incomplete frame: the next read waits for more bytes.
            var rest = buffer.GetPosition(consumed);
            _input.AdvanceTo(rest, status == FrameReadStatus.NeedMoreData ? buffer.End : rest);
        }

        TrackIncompleteFrame(consumed, status == FrameReadStatus.NeedMoreData && !truncatedByEof ? buffer.Length - consumed : 0);
        Interlocked.Add(ref _bytesReceived, consumed);
        _clock.Touch(Now);
        if (consumed > 0)
        {
            _metrics.BytesReceived(Info.ListenerName, consumed);
        }
        if (frames is not null)
        {
            // Frames before a bad one are delivered; the bad one is met again at the start of the next read.
            return (await DeliverFramesAsync([.. frames]), false);
        }

        if (status is FrameReadStatus.TooLarge or FrameReadStatus.Invalid)
        {
            var detail = problem ?? _decoder!.Problem ?? (status == FrameReadStatus.Invalid
                ? "The listener's decoder found an invalid frame."
                : $"A frame exceeds the maximum of {Info.Framing.MaxFrameSize} bytes.");
            LogRejection("frame_rejected", detail, GatewayLog.FrameRejected);
            _metrics.FrameOverLimit(Info.ListenerName);

            // Through the grain, so what it wrote is flushed before the close.
            RequestClose(status == FrameReadStatus.Invalid ? ConnectionCloseReason.ProtocolError : ConnectionCloseReason.FrameTooLarge, detail);
            return (null, false);
        }

        return (null, truncatedByEof && !await DeliverEofAsync());
    }

    private async Task LocateGrainAsync()
    {
        var reply = await CallGrainAsync(this, static (grain, c) => grain.Locate(c.ProtocolBytesSent));
        if (reply.Status != ProtocolReplyStatus.UnknownConnection && reply.GrainSilo is { } silo)
        {
            lock (_lock)
            {
                if (GrainSilo is not null && GrainSilo != silo)
                {
                    GrainSilo = silo;
                    GatewayLog.GrainMoved(_logger, Id, silo);
                }
            }
        }

        await ApplyReplyAsync(reply);
    }

    /// <returns>The frames the grain did not take because it paused reading, or null.</returns>
    private async Task<ReadOnlyMemory<byte>[]?> DeliverFramesAsync(ReadOnlyMemory<byte>[] frames)
    {
        var started = Stopwatch.GetTimestamp();
        var reply = await CallGrainAsync((Connection: this, Frames: frames), static (grain, s) => grain.FramesReceived(s.Frames, s.Connection.ProtocolBytesSent));
        _metrics.GrainCall(Info.ListenerName, "frames_received", started);
        await ApplyReplyAsync(reply);
        return reply.Status == ProtocolReplyStatus.Deferred ? frames[reply.FramesTaken..] : null;
    }

    /// <returns>False when the grain deferred the data because it paused reading.</returns>
    private async Task<bool> DeliverDataAsync(byte[] data)
    {
        GatewayLog.DataDelivered(_logger, Id, data.Length);
        var started = Stopwatch.GetTimestamp();
        var reply = await CallGrainAsync((Connection: this, Data: data), static (grain, s) => grain.DataReceived(s.Data, s.Connection.ProtocolBytesSent));
        _metrics.GrainCall(Info.ListenerName, "data_received", started);
        await ApplyReplyAsync(reply);
        return reply.Status != ProtocolReplyStatus.Deferred;
    }

    /// <returns>False when the grain deferred the EOF because it paused reading.</returns>
    private async Task<bool> DeliverEofAsync()
    {
        var started = Stopwatch.GetTimestamp();
        var reply = await CallGrainAsync(this, static (grain, c) => grain.EofReceived(c.ProtocolBytesSent));
        _metrics.GrainCall(Info.ListenerName, "eof_received", started);
        await ApplyReplyAsync(reply);
        if (reply.Status == ProtocolReplyStatus.Deferred)
        {
            return false;
        }

        lock (_lock)
        {
            _peerEof = true;

            // asyncio: keeping a TLS connection half-open "has no effect when using ssl"; it closes.
            if (!reply.KeepOpen || _tls is not null)
            {
                RequestCloseLocked(ConnectionCloseReason.PeerClosed, null);
            }
        }

        WakeWriter();

        return true;
    }

    /// <summary>
    /// Applies a callback's operations, then waits until every batch the grain had sealed before replying is applied
    /// too (some may still be on their way through the observer), so the next callback sees their effects.
    /// </summary>
    private async Task ApplyReplyAsync(ProtocolReply reply)
    {
        if (reply.Status == ProtocolReplyStatus.UnknownConnection)
        {
            lock (_lock)
            {
                if (_detached)
                {
                    // The grain closed the connection as it went away; a callback already on its way found a new
                    // activation. The close in progress stands: flush, then FIN.
                    return;
                }
            }

            GatewayLog.GrainLostConnection(_logger, Id);
            lock (_lock)
            {
                _grainLost = true;
                AbortLocked(ConnectionCloseReason.GrainUnavailable, "The grain has no record of this connection.");
            }

            WakeWriter();

            return;
        }

        if (reply.Batch is { } batch)
        {
            int epoch;
            lock (_lock)
            {
                epoch = _sequencer.Epoch;
            }

            Apply(batch, epoch);
        }

        while (true)
        {
            lock (_lock)
            {
                if (_sequencer.Applied >= reply.LastSequence || _aborted || _handOff is not null)
                {
                    return;
                }
            }

            await _pumpSignal.WaitAsync();
        }
    }

    private async Task NotifyConnectionLostAsync()
    {
        ConnectionCloseReason reason;
        string? detail;
        lock (_lock)
        {
            if (_grainLost)
            {
                // Calling would only activate a fresh grain that knows nothing of this connection.
                return;
            }

            reason = _closeReason;
            detail = _closeDetail;
        }

        try
        {
            await CallGrainAsync((Reason: reason, Detail: detail), static async (grain, s) =>
            {
                await grain.ConnectionLost(s.Reason, s.Detail);
                return true;
            });
        }
        catch (Exception ex)
        {
            GatewayLog.ConnectionLostFailed(_logger, Id, ex);
        }
    }

    /// <summary>
    /// Calls the connection's grain. Orleans rejects a request it did not deliver, typically when the grain has moved and
    /// the silo it left, which the cached address still names, is stopping and no longer forwards. The grain never saw
    /// that call, so it goes again (the rejection cleared the cached address), a few times at most.
    /// </summary>
    private async Task<T> CallGrainAsync<TState, T>(TState state, Func<IProtocolGrain, TState, Task<T>> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call(_grain, state);
            }
            catch (OrleansMessageRejectionException ex) when (attempt < MaxGrainCallAttempts)
            {
                GatewayLog.GrainCallRejected(_logger, Id, attempt, ex.Message);
            }
        }
    }

    private void RequestCloseLocked(ConnectionCloseReason reason, string? detail)
    {
        if (_closeRequested || _aborted)
        {
            return;
        }

        _closeRequested = true;
        RecordReasonLocked(reason, detail);

        // Reading stops now; the writer flushes what is queued, then closes the socket.
        _outbound.Enqueue(new OutboundItem(OutboundKind.Close, default));
        _writerWakeNeeded = 1;
        WakePumpLocked();
    }

    private void AbortLocked(ConnectionCloseReason reason, string? detail)
    {
        if (_aborted)
        {
            return;
        }

        _aborted = true;
        RecordReasonLocked(reason, detail);

        // A STARTTLS in progress waits on the writer and the writer on it: neither will come now.
        _startTls?.AtGate.TrySetResult();
        _startTls?.GateOpen.TrySetResult();
        _startTls?.Flushed.TrySetResult();
        _startTls?.Done.TrySetResult();
        _outbound.Clear();
        _flow.Clear();
        ResetSocket();
        _writerWakeNeeded = 1;
        WakePumpLocked();
    }

    private void RecordReasonLocked(ConnectionCloseReason reason, string? detail)
    {
        if (_closeReason == ConnectionCloseReason.None)
        {
            _closeReason = reason;
            _closeDetail = detail;
        }
    }

    private void WakePumpLocked()
    {
        _pumpSignal.Set();

        // The pump may be waiting for socket data; Kestrel's reader continuations run on the thread pool, so this is
        // safe under the lock.
        _input.CancelPendingRead();
    }

    private void ResetSocket()
    {
        try
        {
            // Linger 0 makes close send RST: the peer sees the abort, as asyncio's abort and Twisted's abortConnection.
            // On TCP only: a Unix socket has no RST (the peer reads an end of stream).
            if (_socket is { ProtocolType: ProtocolType.Tcp })
            {
                _socket.LingerState = new LingerOption(true, 0);
            }

            _socket?.Dispose();
        }
        catch (ObjectDisposedException)
        {
        }

        _context.Abort(new ConnectionAbortedException("The connection was aborted."));
    }

    private sealed class ConnectionLogScope(string connectionId) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public int Count => 1;

        public KeyValuePair<string, object?> this[int index] =>
            index == 0 ? new("ConnectionId", connectionId) : throw new ArgumentOutOfRangeException(nameof(index));

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
        {
            yield return this[0];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => $"ConnectionId:{connectionId}";
    }
}

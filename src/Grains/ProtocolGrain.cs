using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Placement;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// Base class of a protocol: one activation per connection, written like an <c>asyncio.Protocol</c>. Override the
/// callbacks and talk to the peer through <see cref="Transport"/>.
/// </summary>
/// <remarks>
/// <para>
/// Callbacks follow asyncio's state machine: <see cref="ConnectionMade"/> once, then <see cref="DataReceived"/> any
/// number of times, then <see cref="EofReceived"/> at most once, then <see cref="ConnectionLost"/> exactly once.
/// <see cref="PauseWriting"/> and <see cref="ResumeWriting"/> alternate strictly in between.
/// </para>
/// <para>
/// A callback that throws is logged; the connection is aborted and <see cref="ConnectionLost"/> receives that
/// exception (asyncio's <c>_fatal_error</c>). Other connections are not affected.
/// </para>
/// <para>
/// The grain is placed on the silo whose gateway accepted the connection, is never collected while the connection
/// lives, and deactivates after <see cref="ConnectionLost"/>.
/// </para>
/// </remarks>
[PreferLocalPlacement]
[KeepAlive]
public abstract partial class ProtocolGrain : Grain, IProtocolGrain, IProtocolConnection
{
    private ProtocolTransport? _transport;
    private ITransportObserver? _observer;
    private ILogger? _logger;
    private int _callbackDepth;
    private UnsolicitedSender<TransportBatch>? _sender;
    private bool _lostDelivered;
    private bool _keepOpen;
    private int _framesTaken;
    private Diagnostics.ConnectionGrainCounters? _counters;
    private Diagnostics.ConnectionGrainCounters.Counts? _counts;

    /// <summary>The connection's transport; available from <see cref="ConnectionMade"/> on.</summary>
    /// <exception cref="InvalidOperationException">Before the connection was made.</exception>
    protected ProtocolTransport Transport =>
        _transport ?? throw new InvalidOperationException("The transport is available from ConnectionMade on.");

    /// <summary>Why the connection ended; <see cref="ConnectionCloseReason.None"/> while it is open.</summary>
    protected ConnectionCloseReason CloseReason { get; private set; }

    /// <summary>A logger named after the protocol's class.</summary>
    protected internal ILogger Logger =>
        _logger ??= ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger(GetType());

    /// <summary>The connection was accepted (asyncio <c>connection_made</c>). Reading starts after this returns.</summary>
    protected virtual Task ConnectionMade(ProtocolTransport transport) => Task.CompletedTask;

    /// <summary>Bytes from the peer, in order, chunked arbitrarily, never empty (asyncio <c>data_received</c>).</summary>
    /// <param name="data">The bytes; the grain owns them and may keep them.</param>
    protected virtual Task DataReceived(ReadOnlyMemory<byte> data) => Task.CompletedTask;

    /// <summary>
    /// A whole frame from the peer, on a framed listener (<see cref="ConnectionInfo.Framing"/>): called once per frame,
    /// in order, without its length prefix or delimiter. Answer with <see cref="ProtocolTransport.WriteFrame"/>.
    /// </summary>
    /// <param name="frame">The frame's body; the grain owns it.</param>
    /// <exception cref="NotSupportedException">By default: a framed listener needs a protocol that overrides this.</exception>
    protected virtual Task FrameReceived(ReadOnlyMemory<byte> frame) =>
        throw new NotSupportedException($"{GetType().Name} serves a framed listener but does not override FrameReceived.");

    /// <summary>
    /// Whole frames that arrived together (a pipelined burst), in order, on a framed listener. By default calls
    /// <see cref="FrameReceived"/> for each, stopping early when the protocol pauses reading or closes. Override to handle
    /// a burst at once — one lookup for many requests, one write for their replies — and return how many frames were
    /// taken: the rest are delivered again, first, when reading resumes.
    /// </summary>
    /// <param name="frames">The frames' bodies (at least one); the grain owns them.</param>
    /// <returns>How many frames, from the first, the protocol took.</returns>
    protected virtual async Task<int> FramesReceived(ReadOnlyMemory<byte>[] frames)
    {
        var taken = 0;
        while (taken < frames.Length && Transport.IsReading)
        {
            await FrameReceived(frames[taken]);
            taken++;
        }

        return taken;
    }

    /// <summary>
    /// The peer shut down its write side (asyncio <c>eof_received</c>). Return false (the default) to let the
    /// transport close after flushing; return true to keep the connection half-open: writing still works, and the
    /// protocol must call <see cref="ProtocolTransport.Close()"/> itself.
    /// </summary>
    protected virtual Task<bool> EofReceived() => Task.FromResult(false);

    /// <summary>
    /// The connection ended (asyncio <c>connection_lost</c>); called exactly once. <paramref name="exception"/> is null
    /// after a regular EOF or a close or abort made by this side; otherwise it says what happened: the callback's own
    /// exception, or a <see cref="ConnectionClosedException"/> with the <see cref="ConnectionCloseReason"/>.
    /// </summary>
    protected virtual Task ConnectionLost(Exception? exception) => Task.CompletedTask;

    /// <summary>
    /// The server is about to close the connection: a clock ran out (idle, first data, receive rate), a frame was too
    /// large, the listener is closing or the silo is stopping. What the protocol writes here — a goodbye, an error line
    /// the client understands — is sent before the FIN; then the connection closes and <see cref="ConnectionLost"/>
    /// follows with <paramref name="reason"/>. Not an asyncio callback (asyncio has no server-side limits); by default
    /// nothing is written.
    /// </summary>
    /// <param name="reason">Why the server closes the connection.</param>
    /// <param name="message">Detail for <paramref name="reason"/>, as logged.</param>
    protected virtual Task CloseRequested(ConnectionCloseReason reason, string? message) => Task.CompletedTask;

    /// <summary>
    /// The TLS handshake asked for with <see cref="ProtocolTransport.StartTls"/> is done (asyncio's <c>start_tls</c>
    /// returning): reading resumes, and <see cref="ProtocolTransport.GetExtraInfo"/> answers the TLS names. By default
    /// nothing is done.
    /// </summary>
    protected virtual Task TlsStarted() => Task.CompletedTask;

    /// <summary>The write buffer went over the high-water mark (asyncio <c>pause_writing</c>): stop producing.</summary>
    protected virtual Task PauseWriting() => Task.CompletedTask;

    /// <summary>The write buffer drained to the low-water mark (asyncio <c>resume_writing</c>): produce again.</summary>
    protected virtual Task ResumeWriting() => Task.CompletedTask;

    async Task<ProtocolReply> IProtocolGrain.ConnectionMade(ConnectionInfo connection, ITransportObserver transport)
    {
        if (_transport is not null)
        {
            return Unknown();
        }

        _observer = transport;
        _transport = new ProtocolTransport(this, connection);
        CountConnection();
        await RunCallback(nameof(ConnectionMade), static (g, t) => g.ConnectionMade(t), _transport);
        if (!_lostDelivered)
        {
            WatchGateway();
        }

        return Reply() with { GrainSilo = RuntimeIdentity };
    }

    async Task<ProtocolReply> IProtocolGrain.DataReceived(ReadOnlyMemory<byte> data, long bytesSent)
    {
        await WhileWaking();
        if (RefuseInbound(bytesSent) is { } refused)
        {
            return refused;
        }

        await RunCallback(nameof(DataReceived), static (g, d) => g.DataReceived(d), data);
        return Reply();
    }

    async Task<ProtocolReply> IProtocolGrain.FramesReceived(ReadOnlyMemory<byte>[] frames, long bytesSent)
    {
        await WhileWaking();
        if (RefuseInbound(bytesSent) is { } refused)
        {
            return refused;
        }

        // A protocol that pauses reading (or closes) mid-batch leaves the rest to the gateway.
        _framesTaken = 0;
        await RunCallback(nameof(FramesReceived), static async (g, f) => g._framesTaken = await g.FramesReceived(f), frames);
        var taken = Math.Clamp(_framesTaken, 0, frames.Length);
        var deferred = taken < frames.Length && !_transport!.IsClosing;
        return Reply(deferred ? ProtocolReplyStatus.Deferred : ProtocolReplyStatus.Accepted, framesTaken: taken);
    }

    async Task<ProtocolReply> IProtocolGrain.EofReceived(long bytesSent)
    {
        await WhileWaking();
        if (RefuseInbound(bytesSent) is { } refused)
        {
            return refused;
        }

        _keepOpen = false;
        await RunCallback(nameof(EofReceived), static async (g, _) => { g._keepOpen = await g.EofReceived(); }, 0);
        if (!_keepOpen)
        {
            // The gateway closes the transport after flushing; later writes are dropped, as in asyncio.
            _transport!.MarkClosing();
        }

        return Reply(keepOpen: _keepOpen);
    }

    /// <summary>
    /// The reply for a DataReceived or EofReceived that must not reach the protocol, or null to deliver it: unknown
    /// connection; closing (asyncio removes the reader on close); or reading paused (the gateway keeps the event).
    /// </summary>
    private ProtocolReply? RefuseInbound(long bytesSent)
    {
        if (_transport is not { } transport || _lostDelivered)
        {
            return Unknown();
        }

        transport.OnBytesSent(bytesSent);
        if (transport.IsClosing)
        {
            return Reply();
        }

        return transport.IsReading ? null : Reply(ProtocolReplyStatus.Deferred);
    }

    Task<ProtocolReply> IProtocolGrain.PauseWriting(long bytesSent) => WriteFlowCallback(bytesSent, pause: true);

    async Task<ProtocolReply> IProtocolGrain.Locate(long bytesSent)
    {
        await WhileWaking();
        if (_transport is not { } transport || _lostDelivered)
        {
            return Unknown();
        }

        transport.OnBytesSent(bytesSent);
        return Reply() with { GrainSilo = RuntimeIdentity };
    }

    Task<ProtocolReply> IProtocolGrain.ResumeWriting(long bytesSent) => WriteFlowCallback(bytesSent, pause: false);

    async Task<ProtocolReply> IProtocolGrain.TlsStarted(TlsInfo tls, long bytesSent)
    {
        await WhileWaking();
        if (_transport is not { } transport || _lostDelivered)
        {
            return Unknown();
        }

        transport.OnBytesSent(bytesSent);
        transport.OnTlsStarted(tls);
        await RunCallback(nameof(TlsStarted), static (g, _) => g.TlsStarted(), 0);
        return Reply();
    }

    async Task<ProtocolReply> IProtocolGrain.CloseRequested(ConnectionCloseReason reason, string? message, long bytesSent)
    {
        await WhileWaking();
        if (_transport is not { } transport || _lostDelivered)
        {
            return Unknown();
        }

        transport.OnBytesSent(bytesSent);
        if (!transport.IsClosing)
        {
            await RunCallback(nameof(CloseRequested), static (g, r) => g.CloseRequested(r.reason, r.message), (reason, message));
        }

        transport.Close(reason, message);
        return Reply();
    }

    async Task IProtocolGrain.ConnectionLost(ConnectionCloseReason reason, string? message)
    {
        await WhileWaking();
        if (_transport is not null)
        {
            var exception = reason.IsClean() ? null : new ConnectionClosedException(reason, message);
            await DeliverConnectionLost(reason, exception);
        }

        // The gateway calls this once per connection; the activation has nothing left to do.
        DeactivateOnIdle();
    }

    /// <inheritdoc />
    /// <remarks>
    /// Deactivated while the connection lives: a protocol that can move and is migrating takes its connection along
    /// (<see cref="Migratable"/>); otherwise (its silo is stopping, an operator or Orleans let it go) the connection is
    /// closed cleanly — what the protocol wrote is flushed, then a FIN — and the protocol gets <see cref="ConnectionLost"/>
    /// once, with <see cref="ConnectionCloseReason.ServerShutdown"/> when the silo is stopping. Never a reset.
    /// </remarks>
    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_transport is { } transport && !_lostDelivered && _observer is { } observer)
        {
            // Nothing is pushed from here on but what this method sends: a push in flight completes first.
            if (_sender is { } sender)
            {
                await sender.StopAsync();
            }

            if (reason.ReasonCode == DeactivationReasonCode.Migrating && Migratable)
            {
                await PrepareToMoveAsync(transport, observer, cancellationToken);
            }
            else
            {
                await LetGoAsync(transport, observer, reason, cancellationToken);
            }
        }

        await base.OnDeactivateAsync(reason, cancellationToken);
    }

    private async Task LetGoAsync(ProtocolTransport transport, ITransportObserver observer, DeactivationReason reason, CancellationToken cancellationToken)
    {
        var (closeReason, message) = reason.ReasonCode == DeactivationReasonCode.ShuttingDown
            ? (ConnectionCloseReason.ServerShutdown, "The silo holding the connection's grain is stopping.")
            : (ConnectionCloseReason.GrainUnavailable, $"The connection's grain was deactivated: {reason}.");
        transport.Detach(closeReason, message);
        if (transport.TakeBatch() is { } batch)
        {
            try
            {
                await observer.Send(this.GetGrainId(), batch).WaitAsync(cancellationToken);
            }
            catch (Exception ex)
            {
                Logger.LogDebug(ex, "Connection {ConnectionId}: could not ask the gateway to close.", transport.Connection.ConnectionId);
            }
        }

        await DeliverConnectionLost(closeReason, new ConnectionClosedException(closeReason, message));
    }

    private async Task<ProtocolReply> WriteFlowCallback(long bytesSent, bool pause)
    {
        await WhileWaking();
        if (_transport is not { } transport || _lostDelivered)
        {
            return Unknown();
        }

        transport.OnBytesSent(bytesSent);
        if (!transport.IsClosing)
        {
            await transport.InFlowChangeAsync(bytesSent, () => RunCallback(
                pause ? nameof(PauseWriting) : nameof(ResumeWriting),
                static (g, p) => p ? g.PauseWriting() : g.ResumeWriting(),
                pause));
        }

        return Reply();
    }

    private async Task RunCallback<TState>(string name, Func<ProtocolGrain, TState, Task> callback, TState state)
    {
        _callbackDepth++;
        try
        {
            await callback(this, state);
        }
        catch (Exception ex)
        {
            var transport = _transport!;
            Logger.LogError(ex, "Connection {ConnectionId}: protocol callback {Callback} failed; aborting the connection.", transport.Connection.ConnectionId, name);
            transport.Abort(ConnectionCloseReason.ApplicationError, $"{name} failed: {ex.GetType().Name}: {ex.Message}");
            await DeliverConnectionLost(ConnectionCloseReason.ApplicationError, ex);
        }
        finally
        {
            _callbackDepth--;
        }

        if (_transport is { HandedOff: true } && !_lostDelivered)
        {
            // Handed to another protocol: this one is done. No ConnectionLost, as asyncio's set_protocol.
            _lostDelivered = true;
            _counts?.Connection(-1);
            StopWatchingGateway();
            await ExitNurseryAsync();
            DeactivateOnIdle();
        }
    }

    /// <summary>
    /// Logs what a client can cause on every connection it opens (an oversized frame, say) sampled per listener and
    /// kind: the first and every 1,000th at <paramref name="level"/> with the count so far, the others at Debug.
    /// </summary>
    protected internal void LogSampled(LogLevel level, string kind, string message)
    {
        var connectionId = _transport?.Connection.ConnectionId ?? this.GetPrimaryKeyString();
        var count = Diagnostics.LogSampling.Next(Diagnostics.LogSampling.ListenerOf(connectionId), kind);
        if (Diagnostics.LogSampling.IsSampled(count))
        {
            Logger.Log(level, "Connection {ConnectionId}: {Message} ({Count} so far on this listener)", connectionId, message, count);
        }
        else
        {
            Logger.LogDebug("Connection {ConnectionId}: {Message}", connectionId, message);
        }
    }

    /// <summary>True while a gateway callback runs (its operations go back with the reply).</summary>
    internal bool InCallback => _callbackDepth > 0;

    /// <summary>The Orleans grain type name of a protocol grain class, for <see cref="ProtocolTransport.SetProtocol{TGrain}"/>.</summary>
    internal string GetGrainTypeName(Type grainClass) =>
        ServiceProvider.GetRequiredService<Orleans.Metadata.GrainTypeResolver>().GetGrainType(grainClass).ToString()!;

    private async Task DeliverConnectionLost(ConnectionCloseReason reason, Exception? exception)
    {
        if (_lostDelivered)
        {
            return;
        }

        _lostDelivered = true;
        _counts?.Connection(-1);
        CloseReason = reason;
        _transport!.MarkLost();

        // Callers waiting for their sends to drain learn nothing more will drain.
        _sender?.Released();
        StopWatchingGateway();

        // Nothing the connection started outlives it, and nothing of it runs once ConnectionLost begins.
        await ExitNurseryAsync();
        try
        {
            await ConnectionLost(exception);
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "Connection {ConnectionId}: ConnectionLost failed.", _transport.Connection.ConnectionId);
        }
    }

    private ProtocolReply Reply(ProtocolReplyStatus status = ProtocolReplyStatus.Accepted, bool keepOpen = false, int framesTaken = 0)
    {
        var transport = _transport!;
        return new ProtocolReply(transport.TakeBatch(), status, keepOpen, transport.LastSequence, framesTaken);
    }

    private ProtocolReply Unknown()
    {
        if (_transport is null)
        {
            // A fresh activation (the connection's grain was lost with its silo): nothing to keep it for.
            DeactivateOnIdle();
        }

        return new(null, ProtocolReplyStatus.UnknownConnection, false, 0);
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Connections.Opening;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// One accepted (or outbound) socket and its grain. The connection owns the lifecycle (<see cref="ConnectionLifecycle"/>)
/// and the control state under one lock, and composes the parts that each own one concern: the opening steps
/// (<see cref="ProxyHeaderStep"/>, <see cref="TlsStep"/>), the inbound pump (<see cref="ConnectionPump"/>), the grain
/// session (<see cref="GrainSession"/>), the outbound writer (<see cref="OutboundWriter"/>) and the clocks
/// (<see cref="ConnectionClock"/>). It is also where the grain's batches are applied, in their sequence order.
/// </summary>
/// <remarks>
/// Lock order: this connection's lock, then the writer's. Nothing that runs grain code or waits runs under either.
/// </remarks>
internal sealed partial class GatewayConnection : IOutboundEvents
{
    private readonly ConnectionContext _context;
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<bool> _made = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _told = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly ConnectionPump _pump;
    private volatile ConnectionTransport _transport;
    private long _bytesReceived;

    // Guarded by _lock: the lifecycle, the order of the grain's batches (and its epoch: the current protocol's number),
    // the current protocol's grain, what the pump is asked to do next, and the inbound pauses.
    private readonly ConnectionLifecycle _life = new();
    private readonly BatchSequencer _sequencer = new();
    private GrainId _grainId;
    private PumpRequests _requests;
    private (string Protocol, ReadOnlyMemory<byte> Data)? _handOff;
    private (ConnectionCloseReason Reason, string? Detail)? _serverClose;
    private StartTlsUpgrade? _startTls;
    private volatile bool _serverCloseAsked;
    private bool _readPaused;
    private bool _peerEof;

    public GatewayConnection(ConnectionContext context, ListenerContext listener)
    {
        _context = context;
        Listener = listener;
        Clock = new(listener.ClockLimits, ConnectionClock.Now(listener.Time));
        Sleep = new(listener.ClockLimits.SleepMs, change => listener.Metrics.Hibernated(listener.Name, change));

        // Unique across the cluster and over time; never ip:port, which the OS reuses. The listener's name in front
        // lets anyone find the connection in that listener's directory by id alone.
        var id = $"{listener.Name}/{Guid.CreateVersion7():N}";
        var unix = context.LocalEndPoint is UnixDomainSocketEndPoint || context.RemoteEndPoint is UnixDomainSocketEndPoint;
        Info = new ConnectionInfo(id, listener.Name, context.LocalEndPoint as IPEndPoint, context.RemoteEndPoint as IPEndPoint)
        {
            Framing = listener.Framing,
            GrainType = listener.GrainTypeName,
            GatewaySilo = listener.Siting.LocalSiloName,
            LocalPath = unix ? UnixPath(context.LocalEndPoint) : null,
            RemotePath = unix ? UnixPath(context.RemoteEndPoint) : null,
            MaxWriteBufferSize = listener.Options.MaxWriteBufferSize,
        };
        _grainId = GrainId.Create(listener.GrainType, id);
        _transport = ConnectionTransport.Accept(context, listener.Options.NoDelay);
        Writer = new OutboundWriter(id, listener, Clock, this) { Transport = _transport };
        Session = new GrainSession(this, listener, _grainId);
        Opening = new ConnectionOpening(this);
        _pump = new ConnectionPump(this);
    }

    /// <summary>What the connection reads from and writes to now (TLS swaps in its own).</summary>
    internal ConnectionTransport Transport => _transport;

    /// <summary>
    /// An opening step hands on its transport (TLS over the socket). Called on the pump, while the writer is parked
    /// (at accept nothing is queued yet; STARTTLS holds it at its gate).
    /// </summary>
    internal void UseTransport(ConnectionTransport transport)
    {
        _transport = transport;
        Writer.Transport = transport;
    }

    internal ConnectionOpening Opening { get; }

    /// <summary>What the connection's listener shares with all its connections.</summary>
    public ListenerContext Listener { get; }

    public ConnectionInfo Info { get; internal set; }

    public string Id => Info.ConnectionId;

    internal OutboundWriter Writer { get; }

    internal GrainSession Session { get; }

    internal ConnectionClock Clock { get; }

    /// <summary>The connection's hibernation: when it is due, and the grain's state while it sleeps.</summary>
    internal ConnectionSleep Sleep { get; }

    internal ILogger Logger => Listener.Logger;

    /// <summary>True once the grain's <c>ConnectionMade</c> has run; false if the connection ended first.</summary>
    public Task<bool> Made => _made.Task;

    /// <summary>Completes once the connection has ended and its grain was told (before a graceful close's linger).</summary>
    internal Task GrainTold => _told.Task;

    /// <summary>Completes when the connection is closed and its grain was told.</summary>
    public Task Completion => _completion.Task;

    /// <summary>The silo the connection's grain lives on, as it said in its <c>ConnectionMade</c> reply.</summary>
    public string? GrainSilo => Session.GrainSilo;

    /// <summary>Why the TLS handshake failed, if it did.</summary>
    internal string? HandshakeError { get; set; }

    /// <summary>The client TLS of an outbound connection: handshaken before its grain is created.</summary>
    internal (SslClientAuthenticationOptions Options, TimeSpan Timeout)? ClientTls { get; private set; }

    /// <summary>The client address this connection holds a place for under the per-address limit, if any.</summary>
    internal IPAddress? CountedAddress { get; set; }

    /// <summary>Bytes handed to the socket so far.</summary>
    internal long BytesSent => Writer.BytesSent;

    /// <summary>Bytes sent as the current protocol counts them (from its <c>SetProtocol</c>).</summary>
    internal long ProtocolBytesSent => Writer.ProtocolBytesSent;

    /// <summary>Bytes accepted from the grain and not yet handed to the socket (asyncio's write buffer size).</summary>
    internal long WriteBufferSize => Writer.Buffered;

    /// <summary>The largest <see cref="WriteBufferSize"/> seen; for tests and diagnostics.</summary>
    internal long PeakWriteBufferSize => Writer.Peak;

    /// <summary>When a byte last went either way (<see cref="ConnectionClock.Now"/>), for the idle timeout.</summary>
    public long LastActivity => Clock.LastActivity;

    /// <summary>Bytes of an incomplete frame the pump is waiting on the peer for, or -1 (tests synchronise on it).</summary>
    internal long AwaitedIncompleteFrame => Clock.AwaitedIncompleteFrame;

    /// <summary>Why the connection ended (or is ending); <see cref="ConnectionCloseReason.None"/> while it is open.</summary>
    internal ConnectionCloseReason CloseReason => _life.Reason;

    internal void AddBytesReceived(long count) => Interlocked.Add(ref _bytesReceived, count);

    /// <summary>Makes this (outbound) connection a TLS client, handshaking before its grain is created.</summary>
    internal void UseClientTls(SslClientAuthenticationOptions options, TimeSpan handshakeTimeout) => ClientTls = (options, handshakeTimeout);

    /// <summary>Runs the connection from <c>ConnectionMade</c> to <c>ConnectionLost</c>. Never throws.</summary>
    public async Task RunAsync()
    {
        using var scope = Logger.BeginScope(new ConnectionLogScope(Id));
        GatewayLog.ConnectionAccepted(Logger, Id, Info.RemoteEndPoint, Info.ListenerName);
        Listener.Metrics.ConnectionOpened(Info.ListenerName);
        var writer = Writer.RunAsync();
        try
        {
            // A bad PROXY header or a failed TLS handshake drops the connection before any grain exists.
            if (await Opening.OpenAsync())
            {
                await _pump.ApplyReplyAsync(await Session.ConnectionMadeAsync());
                _made.TrySetResult(true);
                await _pump.RunAsync();
            }
        }
        catch (Exception ex)
        {
            GatewayLog.GrainUnavailable(Logger, Id, ex);
            Abort(ConnectionCloseReason.GrainUnavailable, ex.Message);
        }

        var linger = await writer;
        var end = End();
        try
        {
            if (end.Tell)
            {
                await Session.ConnectionLostAsync(end.Reason, end.Detail);
            }

            _told.TrySetResult();
            if (linger)
            {
                await _pump.LingerAsync();
            }

            await _context.DisposeAsync();
            GatewayLog.ConnectionClosed(
                Logger, Id, end.Reason, end.Detail, Stopwatch.GetElapsedTime(_startTimestamp), Interlocked.Read(ref _bytesReceived), BytesSent);
        }
        finally
        {
            Listener.Metrics.ConnectionClosed(Info.ListenerName, end.Reason, Stopwatch.GetElapsedTime(_startTimestamp));

            // Nothing more is written: no group keeps it. A grain still asleep (its connection lost with it) leaves the gauge.
            Listener.Services.Groups.LeaveAll(this);
            Sleep.TakeState();

            // Whatever happened above, the server's drain must not wait for this connection.
            _made.TrySetResult(false);
            _told.TrySetResult();
            _completion.TrySetResult();
        }
    }

    /// <summary>
    /// The pump and the writer are done: the connection ends (it leaves the paused gauges), and says why and whether
    /// its grain is to be told (calling a lost grain would only activate a fresh one that knows nothing of it).
    /// </summary>
    private (ConnectionCloseReason Reason, string? Detail, bool Tell) End()
    {
        lock (_lock)
        {
            SetReadPausedLocked(false);
            _life.Ended();
            Writer.ConfigureFlow(null, restart: false, ended: true);
            return (_life.Reason, _life.Detail, _life.Grain == GrainLink.Attached);
        }
    }

    /// <summary>The connection's figures now (the directory's <c>ListStatus</c>, the live view).</summary>
    internal ConnectionStatus Status()
    {
        // Shown as GatewaySilo is (address:port@generation), not as the runtime identity (Saddress:port:generation).
        var grainSilo = GrainSilo is { Length: > 1 } silo && silo[0] == 'S' && silo.LastIndexOf(':') is > 1 and var colon
            ? $"{silo[1..colon]}@{silo[(colon + 1)..]}"
            : GrainSilo;
        return new ConnectionStatus(
            Info, grainSilo, Stopwatch.GetElapsedTime(_startTimestamp), Interlocked.Read(ref _bytesReceived), BytesSent, Writer.Paused, Volatile.Read(ref _readPaused))
        {
            Hibernated = Sleep.IsAsleep,
        };
    }

    /// <summary>
    /// Asks the connection to close from the server side (its listener closes, the silo stops). The pump asks the
    /// grain, whose reply carries everything it wrote before the request, then the connection flushes and closes.
    /// </summary>
    public void RequestClose(ConnectionCloseReason reason, string? detail) => Post(PumpRequests.ServerClose, (reason, detail));

    /// <summary>
    /// The silo the gateway last knew the grain on has ended after stopping gracefully. Its grains either moved (the new
    /// activation's notice may still be on the way) or closed their connections, so the pump asks the grain where it is
    /// instead of taking the silo's end for the grain's; only an answer that it has no record resets the connection.
    /// </summary>
    public void LocateGrain() => Post(PumpRequests.Locate, default);

    /// <summary>The grain's silo died: reset the connection, and do not call the grain again (it would only activate afresh).</summary>
    public void AbortGrainLost(string detail) => Abort(ConnectionCloseReason.GrainUnavailable, detail, grainLost: true);

    /// <summary>Resets the connection at once, discarding what is buffered.</summary>
    /// <param name="reason">Why, unless a close or abort before it named one.</param>
    /// <param name="detail">Words for the log and <c>ConnectionLost</c>.</param>
    /// <param name="grainLost">No grain has the connection: it is not called again (not even <c>ConnectionLost</c>).</param>
    /// <param name="replaceReason">This reason wins over a close's already on its way (the send-rate clock).</param>
    public void Abort(ConnectionCloseReason reason, string? detail, bool grainLost = false, bool replaceReason = false)
    {
        lock (_lock)
        {
            if (grainLost)
            {
                _life.LoseGrain();
            }

            AbortLocked(reason, detail, replaceReason);
        }

        Writer.Wake();
    }

    /// <summary>A graceful close: what is queued is sent, then the FIN (or close_notify on TLS).</summary>
    /// <param name="reason">Why, unless a close or abort before it named one.</param>
    /// <param name="detail">Words for the log and <c>ConnectionLost</c>.</param>
    /// <param name="grainLost">No grain has the connection (a refusal after the PROXY header).</param>
    public void Close(ConnectionCloseReason reason, string? detail, bool grainLost = false)
    {
        lock (_lock)
        {
            if (grainLost)
            {
                _life.LoseGrain();
            }

            CloseLocked(reason, detail);
        }

        Writer.Wake();
    }

    /// <summary>
    /// The grain took the peer's EOF: input has ended. Unless it asked to stay half-open the connection closes (on TLS
    /// always: asyncio's keep-open "has no effect when using ssl").
    /// </summary>
    internal void EofDelivered(bool keepOpen)
    {
        // Written by the pump alone, and read by it (TakeWork) next.
        Volatile.Write(ref _peerEof, true);
        if (!keepOpen || Transport.IsTls)
        {
            Close(ConnectionCloseReason.PeerClosed, null);
        }
    }

    /// <summary>Checks every clock; closes or aborts the connection at the first one run out. Called by the heartbeat.</summary>
    /// <returns>The clock that ran out and why, for the heartbeat's log, or null.</returns>
    internal (ConnectionCloseReason Reason, string Detail)? CheckClocks(long now)
    {
        // Read without the lock: a state a move behind costs at most one check (a close already on its way ignores
        // another, and a second abort is none).
        if (_life.IsAborted)
        {
            return null;
        }

        var closing = _life.IsEnding || _serverCloseAsked;
        if (Clock.Check(now, Writer.Pending, BytesSent, closing) is not { } expired)
        {
            if (!closing && Sleep.Due(now, Clock.LastActivity))
            {
                Post(PumpRequests.Hibernate, default);
            }

            return null;
        }

        if (expired.Abort)
        {
            // The send rate: the reason replaces a close's that was waiting for the very bytes the peer does not take.
            Abort(expired.Reason, expired.Detail, replaceReason: true);
        }
        else
        {
            // Through the grain, so what it wrote is flushed before the close.
            RequestClose(expired.Reason, expired.Detail);
        }

        return (expired.Reason, expired.Detail);
    }

    /// <summary>
    /// The grain's reply said it has no record of the connection. A grain that closed the connection as it went away
    /// (detached) is left to finish that close; otherwise the connection is reset.
    /// </summary>
    internal void UnknownConnection()
    {
        if (_life.Grain == GrainLink.Detached)
        {
            // A callback already on its way found a new activation. The close in progress stands: flush, then FIN.
            return;
        }

        GatewayLog.GrainLostConnection(Logger, Id);
        Abort(ConnectionCloseReason.GrainUnavailable, "The grain has no record of this connection.", grainLost: true);
    }

    private void Post(PumpRequests request, (ConnectionCloseReason Reason, string? Detail) close)
    {
        lock (_lock)
        {
            if (_life.IsEnding || (request == PumpRequests.ServerClose && _serverClose is not null)
                || (request is PumpRequests.Locate or PumpRequests.Hibernate && _life.Grain != GrainLink.Attached))
            {
                if (request == PumpRequests.Hibernate)
                {
                    Sleep.Answered(null, ConnectionClock.Now(Listener.Time));
                }

                return;
            }

            if (request == PumpRequests.ServerClose)
            {
                _serverClose = close;
                _serverCloseAsked = true;
            }

            _requests |= request;
            WakePumpLocked();
        }
    }

    private void CloseLocked(ConnectionCloseReason reason, string? detail)
    {
        if (_life.TryClose(reason, detail))
        {
            // Reading stops now; the writer flushes what is queued, then closes the socket.
            Writer.Submit(OutboundKind.Close);
            WakePumpLocked();
        }
    }

    private void AbortLocked(ConnectionCloseReason reason, string? detail, bool replaceReason = false)
    {
        if (_life.TryAbort(reason, detail, replaceReason))
        {
            Writer.Abort(_startTls);
            WakePumpLocked();
        }
    }

    private void SetReadPausedLocked(bool paused)
    {
        if (_readPaused != paused)
        {
            Volatile.Write(ref _readPaused, paused);
            Clock.ReadingPaused(paused, ConnectionClock.Now(Listener.Time));
            Listener.Metrics.Paused(Info.ListenerName, "read", paused ? 1 : -1);
        }
    }

    // Safe under the lock: the pump's continuations run on the thread pool.
    private void WakePumpLocked() => _pump.Wake();

    void IOutboundEvents.WriteFlowChanged() => _pump.Wake();

    void IOutboundEvents.SendFailed(Exception error) => Abort(ConnectionCloseReason.PeerReset, error.Message);

    // An unnamed Unix socket (a server's client) reports no end point, or one without a path: asyncio's empty string.
    private static string UnixPath(EndPoint? endPoint) => (endPoint as UnixDomainSocketEndPoint)?.ToString() ?? "";

    [Flags]
    private enum PumpRequests
    {
        None = 0,
        ServerClose = 1,
        Locate = 2,
        Hibernate = 4,
    }
}

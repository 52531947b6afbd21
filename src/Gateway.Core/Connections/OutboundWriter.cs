using System.Buffers;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Connections.Opening;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>What the writer tells its connection, outside its own lock.</summary>
internal interface IOutboundEvents
{
    /// <summary>Writing paused or resumed (<see cref="OutboundWriter.TryTakeFlowEvent"/> has it): the pump must look.</summary>
    void WriteFlowChanged();

    /// <summary>A send failed: the peer is gone.</summary>
    void SendFailed(Exception error);
}

/// <summary>
/// The way back to the socket: the queue of what the grain wrote (bytes, half-close, close, the STARTTLS gates), the
/// write buffer's accounting and asyncio's watermarks (<see cref="WriteFlow"/>), and the one loop that sends in order.
/// </summary>
/// <remarks>
/// Owns its state under its own lock; the connection may call it while holding its own lock, never the other way round.
/// The loop runs inline on the thread that queued the bytes (usually the pump, right after the grain's reply), saving a
/// thread-pool hop per response; it is woken only outside every lock, through <see cref="Wake"/>.
/// </remarks>
internal sealed class OutboundWriter
{
    private readonly Lock _lock = new();
    private readonly Queue<OutboundItem> _queue = new();
    private readonly Queue<(bool Pause, long BytesSent)> _flowEvents = new();
    private readonly AsyncSignal _signal = new(inline: true);
    private readonly WriteFlow _flow;
    private readonly IOutboundEvents _events;
    private readonly ListenerContext _listener;
    private readonly ConnectionClock _clock;
    private readonly ILogger _logger;
    private readonly string _connectionId;
    private int _wakeNeeded;
    private long _bytesSent;
    private long _protocolSentBase;
    private long _buffered;
    private long _groupBuffered;
    private bool _outputShut;
    private bool _aborted;
    private volatile int _pendingFlowEvents;

    public OutboundWriter(string connectionId, ListenerContext listener, ConnectionClock clock, IOutboundEvents events)
    {
        _connectionId = connectionId;
        _listener = listener;
        _clock = clock;
        _events = events;
        _logger = listener.Logger;
        _flow = new WriteFlow(listener.Options.MaxWriteBufferSize);
    }

    /// <summary>What the writer sends through: swapped by the pump when TLS starts, while the writer waits at its gate.</summary>
    public ConnectionTransport Transport { get; set; } = null!;

    /// <summary>Bytes handed to the socket so far.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>
    /// <see cref="BytesSent"/> as the current protocol counts it: from when it took the connection over (SetProtocol),
    /// so that its bytes written minus these is the write buffer, inherited bytes included.
    /// </summary>
    public long ProtocolBytesSent => Interlocked.Read(ref _bytesSent) - Volatile.Read(ref _protocolSentBase);

    /// <summary>Bytes accepted and not yet handed to the socket (asyncio's write buffer size).</summary>
    public long Buffered => Volatile.Read(ref _buffered);

    /// <summary>Bytes of group messages accepted and not yet handed to the socket (kept apart from the protocol's write buffer).</summary>
    public long GroupBuffered => Volatile.Read(ref _groupBuffered);

    /// <summary>Everything waiting for the peer: the protocol's write buffer and group messages.</summary>
    public long Pending => Buffered + GroupBuffered;

    /// <summary>The largest <see cref="Buffered"/> seen; for tests and diagnostics.</summary>
    public long Peak => Volatile.Read(ref _peak);

    private long _peak;

    /// <summary>Whether the protocol was last told to pause writing.</summary>
    public bool Paused => _paused;

    private volatile bool _paused;

    /// <summary>Whether the connection was aborted: nothing more is sent.</summary>
    public bool IsAborted => Volatile.Read(ref _aborted);

    /// <summary>Whether a half-close (<c>WriteEof</c>) was queued: no more data or STARTTLS after it.</summary>
    public bool OutputShut => Volatile.Read(ref _outputShut);

    /// <summary>Whether a pause or resume is waiting for the pump.</summary>
    public bool HasFlowEvent => _pendingFlowEvents > 0;

    /// <summary>
    /// Queues an operation. Data counts against the write buffer; false when that takes it over the hard cap
    /// (<see cref="ProtocolListenerOptions.MaxWriteBufferSize"/>): the caller aborts. A group message counts apart, not
    /// in the protocol's write buffer nor its watermarks; false when it would take the group backlog over
    /// <see cref="ProtocolListenerOptions.MaxGroupBacklog"/>, and then it is not queued. Nothing is queued after an
    /// abort, and no data or half-close after a half-close.
    /// </summary>
    public bool Submit(OutboundKind kind, ReadOnlyMemory<byte> data = default, StartTlsUpgrade? upgrade = null)
    {
        lock (_lock)
        {
            if (_aborted || (_outputShut && kind is OutboundKind.Data or OutboundKind.GroupData or OutboundKind.WriteEof or OutboundKind.StartTlsGate))
            {
                return true;
            }

            if (kind == OutboundKind.GroupData)
            {
                if (_groupBuffered + data.Length > _listener.Options.MaxGroupBacklog)
                {
                    return false;
                }

                _clock.ExtendSendDeadline(data.Length, _flow.Buffered + _groupBuffered, ConnectionClock.Now(_listener.Time));
                Volatile.Write(ref _groupBuffered, _groupBuffered + data.Length);
                _queue.Enqueue(new OutboundItem(kind, data, upgrade));
                _wakeNeeded = 1;
                return true;
            }

            _queue.Enqueue(new OutboundItem(kind, data, upgrade));
            _wakeNeeded = 1;
            if (kind == OutboundKind.WriteEof)
            {
                Volatile.Write(ref _outputShut, true);
            }

            if (kind != OutboundKind.Data)
            {
                return true;
            }

            _clock.ExtendSendDeadline(data.Length, _flow.Buffered + _groupBuffered, ConnectionClock.Now(_listener.Time));
            _flow.Add(data.Length);
            Volatile.Write(ref _buffered, _flow.Buffered);
            Volatile.Write(ref _peak, _flow.Peak);
            if (_flow.OverCap)
            {
                return false;
            }

            UpdateFlowLocked();
            return true;
        }
    }

    /// <summary>Describes the hard cap the write buffer went over, for the abort.</summary>
    public string OverCapDetail() => $"{Buffered} bytes are waiting for the peer (it has taken {BytesSent} so far), over the cap of {_flow.Cap} (MaxWriteBufferSize).";

    /// <summary>
    /// The protocol's <c>set_write_buffer_limits</c> (<paramref name="limits"/>), or a new protocol taking the
    /// connection over (<paramref name="restart"/>: asyncio's default marks, not paused, told at once if over the
    /// high-water mark, its byte counts from here), or the connection ending (both null and false: leave the gauge).
    /// </summary>
    public void ConfigureFlow((int High, int Low)? limits, bool restart, bool ended = false)
    {
        lock (_lock)
        {
            if (restart || ended)
            {
                if (_paused)
                {
                    _listener.Metrics.Paused(_listener.Name, "write", -1);
                }

                _flow.Restart();
                _paused = false;
                _flowEvents.Clear();
                _pendingFlowEvents = 0;
            }

            if (restart)
            {
                Volatile.Write(ref _protocolSentBase, Interlocked.Read(ref _bytesSent));
            }

            if (limits is var (high, low))
            {
                _flow.SetLimits(high, low);
            }

            if (!ended)
            {
                UpdateFlowLocked();
            }
        }
    }

    /// <summary>The next pause or resume to tell the grain, with the bytes sent at that moment as its protocol counts them.</summary>
    public bool TryTakeFlowEvent(out (bool Pause, long BytesSent) flowEvent)
    {
        lock (_lock)
        {
            var taken = _flowEvents.TryDequeue(out flowEvent);
            _pendingFlowEvents = _flowEvents.Count;
            return taken;
        }
    }

    /// <summary>Drops everything queued and resets the socket; the loop ends.</summary>
    public void Abort(StartTlsUpgrade? upgrade)
    {
        lock (_lock)
        {
            if (_aborted)
            {
                return;
            }

            Volatile.Write(ref _aborted, true);
            _queue.Clear();
            _flow.Clear();
            Volatile.Write(ref _buffered, 0);
            Volatile.Write(ref _groupBuffered, 0);
            _wakeNeeded = 1;
        }

        // A STARTTLS in progress waits on the writer and the writer on it: neither will come now.
        upgrade?.Release();
        Transport.Reset();
    }

    /// <summary>Wakes the loop if something was queued for it. Call holding no lock: the loop may run inline.</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _wakeNeeded, 0) == 1)
        {
            _signal.Set();
        }
    }

    /// <summary>Sends what is queued, in order, until the close or an abort.</summary>
    /// <returns>True when the output closed gracefully on a socket that should linger for the peer's FIN.</returns>
    public async Task<bool> RunAsync()
    {
        // Start off the accept path: the first send happens after ConnectionMade anyway.
        await Task.Yield();
        var sent = 0;
        var groupSent = 0;
        try
        {
            while (true)
            {
                if (Next(sent, groupSent, out var gathered) is not { } item)
                {
                    sent = 0;
                    groupSent = 0;
                    if (_aborted)
                    {
                        return false;
                    }

                    await _signal.WaitAsync();
                    continue;
                }

                sent = 0;
                groupSent = 0;
                switch (item.Kind)
                {
                    case OutboundKind.Data:
                    case OutboundKind.GroupData:
                        if (gathered is { } joined)
                        {
                            // Several small writes were waiting (a group's messages to a busy member): one send for all.
                            try
                            {
                                await Transport.SendAsync(joined.Buffer.AsMemory(0, joined.Protocol + joined.Group));
                            }
                            finally
                            {
                                ArrayPool<byte>.Shared.Return(joined.Buffer);
                            }

                            (sent, groupSent) = (joined.Protocol, joined.Group);
                        }
                        else
                        {
                            await Transport.SendAsync(item.Data);
                            (sent, groupSent) = item.Kind == OutboundKind.GroupData ? (0, item.Data.Length) : (item.Data.Length, 0);
                        }

                        break;

                    case OutboundKind.WriteEof:
                        Transport.ShutdownOutput();
                        break;

                    case OutboundKind.StartTlsGate:
                        item.Upgrade!.AtGate.TrySetResult();
                        await item.Upgrade.GateOpen.Task;
                        break;

                    case OutboundKind.StartTls:
                        // The plaintext before the upgrade is on the wire: the pump may handshake now.
                        item.Upgrade!.Flushed.TrySetResult();
                        await item.Upgrade.Done.Task;
                        break;

                    case OutboundKind.Close:
                        return await Transport.CloseOutputAsync();
                }
            }
        }
        catch (Exception ex)
        {
            if (!_aborted)
            {
                _logger.LogDebug(ex, "Connection {ConnectionId}: send failed.", _connectionId);
                _events.SendFailed(ex);
            }

            return false;
        }
    }

    /// <summary>
    /// Accounts the bytes of the last send — the protocol's (<paramref name="sent"/>) and group messages'
    /// (<paramref name="groupSent"/>), kept apart — and takes the next item, in one turn of the lock.
    /// </summary>
    private OutboundItem? Next(int sent, int groupSent, out (byte[] Buffer, int Protocol, int Group)? gathered)
    {
        bool flowChanged;
        OutboundItem? next;
        gathered = null;
        lock (_lock)
        {
            if (_aborted)
            {
                return null;
            }

            flowChanged = false;
            if (sent + groupSent > 0)
            {
                // Group messages are on the wire but not the protocol's: its bytes-sent figure (and so its write
                // buffer) leaves them out.
                Volatile.Write(ref _protocolSentBase, _protocolSentBase + groupSent);
                Interlocked.Add(ref _bytesSent, sent + groupSent);
                _clock.Touch(ConnectionClock.Now(_listener.Time));
                _listener.Metrics.BytesSent(_listener.Name, sent + groupSent);
                Volatile.Write(ref _groupBuffered, _groupBuffered - groupSent);
            }

            if (sent > 0)
            {
                _flow.Sent(sent);
                Volatile.Write(ref _buffered, _flow.Buffered);
                flowChanged = UpdateFlowLocked();
            }

            next = _queue.TryDequeue(out var item) ? item : null;
            if (next is { } taken)
            {
                gathered = GatheredSend.Take(taken, _queue);
            }
        }

        if (flowChanged)
        {
            _events.WriteFlowChanged();
        }

        return next;
    }

    /// <summary>
    /// asyncio's watermarks: pause when the buffer is strictly over high, resume when it is at or below low; the
    /// flag makes the two notifications alternate strictly.
    /// </summary>
    /// <returns>Whether a notification was queued for the pump.</returns>
    private bool UpdateFlowLocked()
    {
        if (_flow.Update() is not { } pause)
        {
            return false;
        }

        // The bytes-sent figure of this moment travels with the notification, so the grain sees a write buffer over
        // high in PauseWriting and at or below low in ResumeWriting, as asyncio's protocol does.
        _paused = pause;
        _listener.Metrics.Paused(_listener.Name, "write", pause ? 1 : -1);
        _flowEvents.Enqueue((pause, ProtocolBytesSent));
        _pendingFlowEvents = _flowEvents.Count;
        GatewayLog.WriteFlowChanged(_logger, _connectionId, _flow.Buffered, pause ? "paused" : "resumed");
        return true;
    }
}

/// <summary>What the writer can be asked to do, in queue order.</summary>
internal enum OutboundKind
{
    Data,

    // A group message: written between the protocol's writes, counted apart from its write buffer.
    GroupData,
    WriteEof,
    Close,

    // STARTTLS: the writer waits at the gate until the pump has dropped what the peer sent before the go-ahead, and at
    // the marker (everything before it sent) while the pump runs the handshake.
    StartTlsGate,
    StartTls,
}

internal readonly record struct OutboundItem(OutboundKind Kind, ReadOnlyMemory<byte> Data, StartTlsUpgrade? Upgrade);

using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The way back to the socket: batches from the grain (callback replies and observer pushes) are applied strictly in
/// their sequence order, their bytes queued, and one writer sends them in order.
/// </summary>
/// <remarks>
/// The writer sends on the socket directly rather than through Kestrel's output pipe: asyncio's contract needs the
/// exact count of bytes not yet accepted by the kernel (the write-buffer watermarks) and half-close (<c>write_eof</c>),
/// and Kestrel's socket transport offers neither (completing its output pipe disposes the socket).
/// </remarks>
internal sealed partial class GatewayConnection
{
    private readonly Queue<OutboundItem> _outbound = new();
    // The writer runs inline on the thread that queued the bytes (usually the pump, right after the grain's reply),
    // saving a thread-pool hop per response; it is woken only outside _lock, through WakeWriter.
    private readonly AsyncSignal _writerSignal = new(inline: true);
    private int _writerWakeNeeded;
    private readonly Queue<(bool Pause, long BytesSent)> _flowEvents = new();
    private Task _writer = Task.CompletedTask;

    // Guarded by _lock: the batches' order and the write buffer's accounting, each its own part.
    private readonly BatchSequencer _sequencer = new();
    private readonly WriteFlow _flow;
    private long _bytesSent;
    private long _protocolSentBase;
    private bool _outputShut;

    // Set by the writer once it closed gracefully: the socket is closed after the linger.
    private bool _linger;

    /// <summary>How long a gracefully closed connection waits for the peer's FIN before the socket is closed.</summary>
    private static readonly TimeSpan LingerTimeout = TimeSpan.FromSeconds(2);

    private enum OutboundKind
    {
        None,
        Data,
        WriteEof,
        Close,

        // STARTTLS: the writer waits at the gate until the pump has dropped what the peer sent before the go-ahead, and
        // at the marker (everything before it sent) while the pump runs the handshake.
        StartTlsGate,
        StartTls,
    }

    /// <summary>Bytes handed to the socket so far.</summary>
    internal long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>
    /// <see cref="BytesSent"/> as the current protocol counts it: from when it took the connection over (SetProtocol),
    /// so that its bytes written minus these is the write buffer, inherited bytes included.
    /// </summary>
    internal long ProtocolBytesSent => Interlocked.Read(ref _bytesSent) - Volatile.Read(ref _protocolSentBase);

    /// <summary>Bytes accepted from the grain and not yet handed to the socket (asyncio's write buffer size).</summary>
    internal long WriteBufferSize
    {
        get
        {
            lock (_lock)
            {
                return _flow.Buffered;
            }
        }
    }

    /// <summary>The largest <see cref="WriteBufferSize"/> seen; for tests and diagnostics.</summary>
    internal long PeakWriteBufferSize
    {
        get
        {
            lock (_lock)
            {
                return _flow.Peak;
            }
        }
    }

    /// <summary>
    /// Applies a push from <paramref name="grain"/>: from the connection's current protocol, unless it is one that
    /// handed the connection over (another grain type), whose pushes are dropped.
    /// </summary>
    /// <returns>The bytes sent so far, as the current protocol counts them.</returns>
    internal long ApplyPush(GrainId grain, TransportBatch batch)
    {
        int epoch;
        lock (_lock)
        {
            epoch = grain.Equals(_grainId) ? _sequencer.Epoch : -1;
        }

        Apply(batch, epoch);
        return ProtocolBytesSent;
    }

    /// <summary>
    /// Applies a batch from the protocol of <paramref name="epoch"/> (a reply or an observer push) in sequence order.
    /// </summary>
    internal void Apply(TransportBatch batch, int epoch)
    {
        lock (_lock)
        {
            // Stale, duplicate or early batches stop here (the sequencer holds an early one until its turn); after a
            // hand-off nothing more from this protocol applies.
            if (_handOff is not null || !_sequencer.Offer(batch, epoch, this, static (connection, next) =>
            {
                connection.ApplyInOrderLocked(next);
                return connection._handOff is null;
            }))
            {
                return;
            }

            // The pump may be waiting for this sequence number, or for reading to resume.
            _pumpSignal.Set();
        }

        WakeWriter();
    }

    /// <summary>Wakes the writer if something under the lock queued work for it. Call without holding the lock.</summary>
    private void WakeWriter()
    {
        if (Interlocked.Exchange(ref _writerWakeNeeded, 0) == 1)
        {
            _writerSignal.Set();
        }
    }

    private void ApplyInOrderLocked(TransportBatch batch)
    {
        if (_aborted)
        {
            return;
        }

        var flags = batch.Flags;
        if ((flags & TransportBatchFlags.Abort) != 0)
        {
            AbortLocked(Reason(batch, ConnectionCloseReason.LocalAbort), batch.CloseMessage);
            return;
        }

        if ((flags & TransportBatchFlags.Moved) != 0 && batch.GrainSilo is { } grainSilo)
        {
            // The grain moved with the connection (its old silo is stopping, say): follow it, so the old silo's end is
            // not taken for the grain's death.
            GrainSilo = grainSilo;
            GatewayLog.GrainMoved(_logger, Id, grainSilo);
        }

        if ((flags & TransportBatchFlags.Detach) != 0)
        {
            // The grain is going away and has told its protocol: finish the connection without calling it again, and
            // without taking its silo's end for a reason to reset (the flush may outlast the silo).
            _grainLost = true;
            _detached = true;
            GrainSilo = null;
        }

        if ((flags & TransportBatchFlags.SetWriteBufferLimits) != 0)
        {
            _flow.SetLimits(batch.WriteBufferHigh, batch.WriteBufferLow);
            UpdateWriteFlowLocked();
        }

        if ((flags & TransportBatchFlags.PauseReading) != 0)
        {
            SetReadPausedLocked(true);
        }
        else if ((flags & TransportBatchFlags.ResumeReading) != 0)
        {
            SetReadPausedLocked(false);
        }

        var startTls = (flags & TransportBatchFlags.StartTls) != 0 && _tls is null && _startTls is null && !_outputShut;
        if (startTls)
        {
            // Before the go-ahead this batch carries: the writer stops there until the pump has noted what the peer
            // sent so far, which it sent before it could have seen the go-ahead.
            _startTls = new StartTlsUpgrade(batch.StartTlsClient);
            _outbound.Enqueue(new OutboundItem(OutboundKind.StartTlsGate, default));
        }

        if (!batch.Data.IsEmpty && !_outputShut)
        {
            _outbound.Enqueue(new OutboundItem(OutboundKind.Data, batch.Data));
            ExtendSendDeadlineLocked(batch.Data.Length);
            _flow.Add(batch.Data.Length);
            if (_flow.OverCap)
            {
                // The grain's transport stops a ProtocolGrain at the same cap before this; this holds for any IProtocolGrain.
                var detail = $"{_flow.Buffered} bytes are waiting for the peer (it has taken {BytesSent} so far), over the cap of {_flow.Cap} (MaxWriteBufferSize).";
                LogRejection("write_buffer_limit", detail, GatewayLog.WriteBufferLimit);
                AbortLocked(ConnectionCloseReason.WriteBufferLimit, detail);
                return;
            }

            UpdateWriteFlowLocked();
            _writerWakeNeeded = 1;
        }

        if ((flags & TransportBatchFlags.WriteEof) != 0 && !_outputShut)
        {
            _outputShut = true;
            _outbound.Enqueue(new OutboundItem(OutboundKind.WriteEof, default));
            _writerWakeNeeded = 1;
        }

        if ((flags & TransportBatchFlags.Close) != 0)
        {
            RequestCloseLocked(Reason(batch, ConnectionCloseReason.LocalClose), batch.CloseMessage);
        }

        if (startTls)
        {
            _outbound.Enqueue(new OutboundItem(OutboundKind.StartTls, default));
            _writerWakeNeeded = 1;
            WakePumpLocked();
        }

        if ((flags & TransportBatchFlags.SetProtocol) != 0 && batch.NewProtocol is { } protocol)
        {
            // The pump switches grains before its next callback; this grain's later batches are dropped.
            _handOff = (protocol, batch.HandOffData);
            WakePumpLocked();
        }

        static ConnectionCloseReason Reason(TransportBatch batch, ConnectionCloseReason fallback) =>
            batch.CloseReason == ConnectionCloseReason.None ? fallback : batch.CloseReason;
    }

    /// <summary>
    /// asyncio's watermarks: pause when the buffer is strictly over high, resume when it is at or below low; the
    /// flag makes the two notifications alternate strictly.
    /// </summary>
    private void UpdateWriteFlowLocked()
    {
        if (_flow.Update() is not { } pause)
        {
            return;
        }

        // The bytes-sent figure of this moment travels with the notification, so the grain sees a write buffer over
        // high in PauseWriting and at or below low in ResumeWriting, as asyncio's protocol does.
        _metrics.Paused(Info.ListenerName, "write", pause ? 1 : -1);
        _flowEvents.Enqueue((pause, ProtocolBytesSent));
        GatewayLog.WriteFlowChanged(_logger, Id, _flow.Buffered, pause ? "paused" : "resumed");
        WakePumpLocked();
    }

    private void SetReadPausedLocked(bool paused)
    {
        if (_readPaused != paused)
        {
            _readPaused = paused;
            _metrics.Paused(Info.ListenerName, "read", paused ? 1 : -1);
        }
    }

    /// <summary>Writing is no longer paused for this protocol (it handed over, or the connection ended): leave the gauge.</summary>
    private void RestartWriteFlowLocked()
    {
        if (_flow.Paused)
        {
            _metrics.Paused(Info.ListenerName, "write", -1);
        }

        _flow.Restart();
    }

    private async Task WriteLoopAsync()
    {
        // Start off the accept path: the first send happens after ConnectionMade anyway.
        await Task.Yield();
        try
        {
            while (true)
            {
                OutboundItem item;
                lock (_lock)
                {
                    if (_aborted)
                    {
                        return;
                    }

                    if (!_outbound.TryDequeue(out item))
                    {
                        item = default;
                    }
                }

                if (item.Kind == OutboundKind.None)
                {
                    await _writerSignal.WaitAsync();
                    continue;
                }

                switch (item.Kind)
                {
                    case OutboundKind.Data:
                        await SendAsync(item.Data);
                        lock (_lock)
                        {
                            Interlocked.Add(ref _bytesSent, item.Data.Length);
                            _clock.Touch(Now);
                            _metrics.BytesSent(Info.ListenerName, item.Data.Length);
                            if (!_aborted)
                            {
                                _flow.Sent(item.Data.Length);
                                UpdateWriteFlowLocked();
                            }
                        }

                        break;

                    case OutboundKind.WriteEof:
                        ShutdownSend();
                        break;

                    case OutboundKind.StartTlsGate:
                        var gate = _startTls!;
                        gate.AtGate.TrySetResult();
                        await gate.GateOpen.Task;
                        break;

                    case OutboundKind.StartTls:
                        // The plaintext before the upgrade is on the wire: the pump may handshake now.
                        var upgrade = _startTls!;
                        upgrade.Flushed.TrySetResult();
                        await upgrade.Done.Task;
                        break;

                    case OutboundKind.Close:
                        if (_tls is not null)
                        {
                            // close_notify goes through Kestrel's output pipe; completing it makes Kestrel send what
                            // it holds, then shut the socket down and close it: FIN after the data.
                            await CloseTlsAsync();
                            await _context.Transport.Output.CompleteAsync();
                            return;
                        }

                        // Everything is in the kernel: FIN after it. The socket is closed only once the peer has
                        // closed too (or the linger passed), reading what it still sends, so that closing on unread
                        // bytes does not turn into a reset that could destroy the last of the output at the peer.
                        ShutdownSend();
                        _linger = true;
                        return;
                }
            }
        }
        catch (Exception ex)
        {
            lock (_lock)
            {
                if (!_aborted)
                {
                    _logger.LogDebug(ex, "Connection {ConnectionId}: send failed.", Id);
                    AbortLocked(ConnectionCloseReason.PeerReset, ex.Message);
                }
            }
        }
    }

    private void ShutdownSend()
    {
        try
        {
            if (_socket is null)
            {
                // In memory: completing the output is the FIN.
                _context.Transport.Output.Complete();
                return;
            }

            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // Already shut (a WriteEof before the close) or reset by the peer: nothing more to send either way.
        }
    }

    /// <summary>
    /// Lingering close (as nginx and Apache do): after our FIN, read and drop what the peer still sends until it closes
    /// or <see cref="LingerTimeout"/> passes.
    /// </summary>
    private async Task LingerAsync()
    {
        using var linger = new CancellationTokenSource(LingerTimeout, _time);
        try
        {
            while (true)
            {
                var read = await _input.ReadAsync(linger.Token);
                _input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted || read.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ConnectionResetException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The peer did not close in time, or reset: the socket closes now.
        }
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> data)
    {
        if (_tls is not null)
        {
            await SendTlsAsync(data);
            return;
        }

        if (_socket is null)
        {
            // In memory: the output pipe's pause threshold stands in for the kernel's send buffer.
            var flushed = await _context.Transport.Output.WriteAsync(data);
            if (flushed.IsCompleted)
            {
                throw new ConnectionResetException("The in-memory peer closed its end.");
            }

            return;
        }

        while (!data.IsEmpty)
        {
            var sent = await _socket.SendAsync(data, SocketFlags.None);
            data = data[sent..];
        }
    }

    private readonly record struct OutboundItem(OutboundKind Kind, ReadOnlyMemory<byte> Data);
}
